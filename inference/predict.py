"""Predict files with any backend; write predictions, masks at the original size and overlays.

Each file is read and decoded here first (what an overlay needs anyway), so an
unreadable file becomes an ``error`` row before any model call. Files then go to
the backend in batches as encoded bytes; if a batch fails, its files are retried
one by one, so one bad file never costs the others their prediction.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from core.classes import CLASS_NAMES
from core.errors import OptionError
from data.imageio import read_image
from data.shift import image_statistics, outside, summarize
from evaluation.tta import combine_views
from inference.backends import Backend
from inference.drawing import draw_boxes, encode_png, label_image, overlay, write_png
from inference.explain import heat_overlay
from inference.measure import measure_mask
from inference.tables import write_predictions
from models.postprocess import MASK_THRESHOLD, check_postprocess, postprocess_np, resize_to_native
from pipeline.decode import decode_image_bytes
from serving.rest import RejectedInput

# Errors that mean "this file cannot be read" and "the model refused this input"; anything
# else (a missing server, a bug) propagates and stops the command.
READ_ERRORS = (OSError, ValueError, tf.errors.InvalidArgumentError)
Explain = Callable[[Sequence[bytes], Sequence[dict[str, np.ndarray]]], list[np.ndarray]]
"""Grad-CAM maps of encoded images from their answers (:mod:`inference.explain`)."""
REJECT_ERRORS = (tf.errors.InvalidArgumentError, RejectedInput)


@dataclass
class Item:
    """One source file on its way through prediction."""

    path: Path
    image: np.ndarray | None = None  # decoded uint8 (H, W, 1|3)
    payload: bytes = b""  # what the backend receives
    error: str = ""
    outputs: list[dict[str, np.ndarray]] = field(default_factory=list)  # original, then flipped (TTA)
    cam: np.ndarray | None = None  # Grad-CAM map (--explain): the predicted class's, or each lesion's in its crop


def load_item(path: Path) -> Item:
    """Read and decode ``path`` as the pipeline does; a failure fills ``error``."""
    item = Item(path)
    try:
        if path.suffix.lower() == ".bmp":  # TF cannot decode every BMP; send lossless PNG pixels instead
            item.image = read_image(path)
            item.payload = encode_png(item.image)
        else:
            item.payload = path.read_bytes()
            item.image = decode_image_bytes(tf.constant(item.payload)).numpy()
        if item.image.shape[0] == 0 or item.image.shape[1] == 0:
            raise ValueError("image has no pixels")
    except READ_ERRORS as e:
        item.error = f"unreadable image: {_short(e)}"
        item.image = None
    return item


def _short(e: Exception) -> str:
    """The message of ``e`` without TensorFlow's op and device decorations."""
    text = getattr(e, "message", None) or str(e)
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    text = re.sub(r"\s*\[Op:[^\]]*\].*$", "", text, flags=re.S)
    return " ".join(text.split())[:300]


def _split(out: dict[str, np.ndarray], n: int) -> list[dict[str, np.ndarray]]:
    return [{k: v[i] for k, v in out.items()} for i in range(n)]


def call_backend(backend: Backend, payloads: list[bytes]) -> list[dict[str, np.ndarray] | str]:
    """Outputs per payload; a payload the backend rejects gets its error message instead."""
    try:
        return _split(backend(payloads), len(payloads))
    except REJECT_ERRORS as e:
        if len(payloads) == 1:
            return [f"model rejected the image: {_short(e)}"]
    return [r for p in payloads for r in call_backend(backend, [p])]


def _combine(outputs: list[dict[str, np.ndarray]], task: str) -> dict[str, np.ndarray]:
    """Combine the original and horizontally flipped predictions (each gated and calibrated by the backend)
    in the original frame, by the rule evaluation uses (:func:`evaluation.tta.combine_views`): class
    probabilities averaged, a lesion kept only if every view keeps one. A joint model's outputs are
    combined as both.
    """
    if len(outputs) == 1:  # one view (a diagnosis' lesions too)
        return dict(outputs[0])
    out: dict[str, np.ndarray] = {}
    if task != "seg":
        out["probabilities"] = combine_views([o["probabilities"][None] for o in outputs], spatial=False)[0]
    if task != "cls":
        maps = [outputs[0]["mask_probability"]] + [o["mask_probability"][:, ::-1] for o in outputs[1:]]
        out["mask_probability"] = combine_views([m[None] for m in maps], spatial=True)[0]
    return out


def _unique_stems(paths: Sequence[Path]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for p in paths:
        n = seen.get(p.stem, 0) + 1
        seen[p.stem] = n
        out.append(p.stem if n == 1 else f"{p.stem}_{n}")
    return out


def _finish(
    item: Item,
    stem: str,
    task: str,
    out_dir: Path,
    pixel_spacing: float | None,
    postprocess: str = "none",
    overlays: bool = True,
) -> dict[str, Any]:
    """The row of one predicted item; writes its mask and (with ``overlays``) its overlay (a joint model's row
    has both parts).

    Raises:
        ValueError: If ``postprocess`` is not ``none`` and the model classifies.
    """
    if task == "cls" and postprocess != "none":
        raise ValueError(f"`--postprocess {postprocess}` is for segmentation models; this one classifies")
    pred = _combine(item.outputs, task)
    row: dict[str, Any] = {"file": str(item.path), "error": ""}
    overlay_path = out_dir / "overlays" / f"{stem}.png"
    label = ""
    if task != "seg":
        probs = pred["probabilities"].astype(float)
        k = int(np.argmax(probs))
        label = f"{CLASS_NAMES[k]} {probs[k]:.2f}"
        row.update(class_name=CLASS_NAMES[k], class_id=k, probability=float(probs[k]))
        row.update({f"prob_{c}": float(p) for c, p in zip(CLASS_NAMES, probs, strict=True)})
        if "malignancy_cut" in item.outputs[0]:  # the run's operating point, on the (view-combined) probabilities
            cut = float(item.outputs[0]["malignancy_cut"])
            row.update(malignancy_cut=cut, malignant_at_cut=bool(probs[CLASS_NAMES.index("malignant")] >= cut))
        if task == "cls" and overlays:
            write_png(overlay_path, overlay(item.image, label))
        if item.cam is not None:
            explain_path = out_dir / "explain" / f"{stem}.png"
            canvas = heat_overlay(item.image, item.cam)
            if task == "diagnosis":  # each lesion's map inside its crop
                draw_boxes(canvas, *_lesions(item.outputs[0], row))
            label_image(canvas, f"{label} (Grad-CAM)")
            write_png(explain_path, canvas)
            row["explain"] = str(explain_path)
    if task != "cls":
        mask, text = _mask_part(item, pred, stem, out_dir, pixel_spacing, postprocess, label, row)
        if overlays:
            canvas = overlay(item.image, text, mask)
            if task == "diagnosis":
                boxes, texts = _lesions(item.outputs[0], row)
                draw_boxes(canvas, boxes, texts)
            write_png(overlay_path, canvas)
        elif task == "diagnosis":
            _lesions(item.outputs[0], row)
    row["overlay"] = str(overlay_path) if overlays else ""
    return row


def _lesions(out: dict[str, np.ndarray], row: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
    """A diagnosis' lesions: their boxes and labels, and ``row``'s ``lesions`` (JSON: box and P(malignant) each)."""
    found = out["lesion_found"].astype(bool)
    boxes, p = out["lesion_boxes"][found], out["lesion_p_malignant"][found]
    row["lesions"] = json.dumps(
        [{"box": [round(float(v), 1) for v in b], "p_malignant": float(q)} for b, q in zip(boxes, p, strict=True)]
    )
    return boxes, [f"P(malignant) {q:.2f}" for q in p]


def _mask_part(item, pred, stem, out_dir, pixel_spacing, postprocess, label, row) -> tuple[np.ndarray, str]:
    """Write the mask at the image's size, add its measurements to ``row``; the mask and the overlay's text."""
    h, w = item.image.shape[:2]
    small = postprocess_np(pred["mask_probability"][None], postprocess)[0]  # at model resolution
    prob = resize_to_native(small, h, w)
    mask = prob >= MASK_THRESHOLD
    mask_path = out_dir / "masks" / f"{stem}_mask.png"
    write_png(mask_path, (mask * 255).astype(np.uint8))
    m = measure_mask(mask, pixel_spacing)
    inside = float(prob[mask].mean()) if mask.any() else None
    row.update(
        mask=str(mask_path),
        height=h,
        width=w,
        lesion_area_fraction=float(mask.mean()),
        mean_lesion_probability=inside,
        **m,
    )
    parts = ([label] if label else []) + [f"lesion {mask.mean():.1%} of image"]
    if m["longest_diameter_px"] is not None:
        mm = m.get("longest_diameter_mm")
        parts.append(f"long axis {mm:.1f} mm" if mm is not None else f"long axis {m['longest_diameter_px']:.0f} px")
    if inside is not None:
        parts.append(f"p {inside:.2f}")
    return mask, ", ".join(parts)


@dataclass
class PredictResult:
    """Rows written and where."""

    rows: list[dict[str, Any]]
    out_dir: Path
    task: str | None
    shift: dict[str, Any] | None = None
    """How many images look unlike the training images (:func:`data.shift.summarize`); None without a
    description of them (a server, or a model trained before descriptions)."""

    @property
    def failed(self) -> int:
        """Files that have an error instead of a prediction."""
        return sum(bool(r["error"]) for r in self.rows)


def predict_files(
    backend: Backend,
    files: Sequence[Path],
    out_dir: Path,
    tta: bool = False,
    pixel_spacing: float | None = None,
    batch_size: int = 8,
    progress: bool = True,
    postprocess: str = "none",
    explainer: Explain | None = None,
    overlays: bool = True,
    workers: int = 2,
) -> PredictResult:
    """Predict ``files`` and write ``predictions.csv``/``.json``, ``masks/`` and ``overlays/`` to ``out_dir``.

    Args:
        backend: Where predictions come from.
        files: Image files; unreadable ones get an ``error`` row.
        out_dir: Output folder (created).
        tta: Also predict the horizontally flipped image and average in the original frame.
        pixel_spacing: Millimetres per pixel of the source images (adds ``*_mm`` measurements).
        batch_size: Files per backend call.
        progress: Show a progress bar.
        postprocess: Segmentation: ``largest`` keeps the largest lesion of each (view-averaged) map,
            holes filled, at model resolution (:func:`models.postprocess.postprocess_np`).
        explainer: Classifiers, joint models and the diagnosis: Grad-CAM maps of images from their answers
            (:class:`inference.explain.Explainer`: the predicted class; :class:`~inference.explain.LesionExplainer`:
            each lesion's class on its crop); each image's map goes to ``explain/<name>.png`` (column ``explain``).
        overlays: Write ``overlays/`` (off: masks and the tables only, for archives).
        workers: Threads that read the next batch and write the finished ones while the model runs
            (1: one after the other). The outputs are the same either way.

    Raises:
        ValueError: On a bad ``batch_size`` or ``postprocess``, or ``postprocess`` for a classifier.
    """
    check_postprocess(postprocess)
    if backend.task == "cls" and postprocess != "none":
        raise OptionError(f"`--postprocess {postprocess}` is for segmentation models; {backend.description} classifies")
    if batch_size < 1:
        raise OptionError(f"`batch_size` must be at least 1. Received: batch_size={batch_size}")
    out_dir.mkdir(parents=True, exist_ok=True)
    stems = _unique_stems(files)
    described = backend.training_images
    finish = partial(_row, backend=backend, out_dir=out_dir, pixel_spacing=pixel_spacing,
                     postprocess=postprocess, overlays=overlays, described=described)  # fmt: skip
    bar = tqdm(total=len(files), unit="img", disable=not progress or len(files) < 2)
    predict = partial(_predict_batch, backend, tta=tta, explainer=explainer)
    done = _pipeline(files, stems, batch_size, workers, predict, finish, bar.update)
    bar.close()
    rows = [row for row, _ in done]
    seen = [stats for _, stats in done if stats is not None]
    shift = None if described is None else summarize(seen, described)
    write_predictions(rows, out_dir, backend, tta, pixel_spacing, postprocess, shift)
    return PredictResult(rows, out_dir, backend.task, shift)


def _row(
    item: Item, stem: str, backend: Backend, described: dict | None, **finish: Any
) -> tuple[dict[str, Any], dict | None]:
    """An item's row (:func:`_finish`; an unreadable file's error), with how it compares with the training
    images when the model has their description (its statistics are returned for the summary).

    The backend's task is read here, after its batch was predicted: a server's is known only from its answers.
    """
    if item.error:
        return {"file": str(item.path), "error": item.error}, None
    row = _finish(item, stem, backend.task, **finish)
    if described is None:
        return row, None
    stats = image_statistics(item.image)
    row["shift"] = ";".join(outside(stats, described))
    return row, stats


def _pipeline(
    files: Sequence[Path],
    stems: Sequence[str],
    batch_size: int,
    workers: int,
    predict: Callable[[list[Item]], None],
    finish: Callable[[Item, str], Any],
    advance: Callable[[int], object],
) -> list[Any]:
    """``finish(item, stem)`` of every file, in order: batches read ahead and finished behind ``predict``.

    The model (``predict``, on the readable items of a batch) runs in this thread while a pool of ``workers``
    threads reads the next batch and finishes the ones before (resizing, measuring, writing PNGs: NumPy,
    OpenCV and TensorFlow's decoders release the GIL). At most two batches wait to be finished.
    """
    batches = [list(files[s : s + batch_size]) for s in range(0, len(files), batch_size)]
    done: list[Any] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        loading = pool.submit(lambda b: [load_item(Path(f)) for f in b], batches[0]) if batches else None
        writing: list[Future] = []
        for k in range(len(batches)):
            items = loading.result()
            if k + 1 < len(batches):
                loading = pool.submit(lambda b: [load_item(Path(f)) for f in b], batches[k + 1])
            predict([it for it in items if not it.error])
            writing += [pool.submit(finish, it, stem) for it, stem in zip(items, stems[k * batch_size :], strict=False)]
            while len(writing) > 2 * batch_size:
                done.append(writing.pop(0).result())
                advance(1)
        for f in writing:
            done.append(f.result())
            advance(1)
    return done


def _predict_batch(
    backend: Backend,
    good: list,
    tta: bool,
    explainer: Explain | None,
) -> None:
    """Call the backend on readable items (and their mirror images with ``tta``); set each item's
    outputs, or its error, and with ``explainer`` its Grad-CAM map (:data:`Explain`)."""
    payloads = [it.payload for it in good]
    flip = tta and not backend.tta_in_graph
    if flip:
        payloads += [encode_png(np.ascontiguousarray(it.image[:, ::-1])) for it in good]
    results = call_backend(backend, payloads) if payloads else []
    if flip and backend.task == "diagnosis":
        raise OptionError(
            "`--tta` with a served diagnosis: its lesion boxes cannot be averaged over views; predict with the "
            "export folder as --model (its serving_tta signature) or the runs"
        )
    views = 2 if flip else 1
    for i, it in enumerate(good):
        got = [results[i + v * len(good)] for v in range(views)]
        errors = [g for g in got if isinstance(g, str)]
        if errors:
            it.error = errors[0]
        else:
            it.outputs = got
    if explainer is not None and backend.task != "seg":
        done = [it for it in good if not it.error]
        if done:
            answers = [_combine(it.outputs, backend.task) for it in done]
            for it, cam in zip(done, explainer([it.payload for it in done], answers), strict=True):
                it.cam = cam
