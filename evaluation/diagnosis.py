"""The diagnosis: a segmenter finds the lesions, a lesion classifier reads each one, the image takes the worst.

An image is normal when the segmenter, with its run's lesion gate (and ``--postprocess``), leaves its
mask empty. Otherwise its lesions (:mod:`models.lesions`: the largest 8-connected parts of the mask at the
segmenter's resolution, at most :data:`models.lesions.MAX_LESIONS`), their boxes scaled to the image's own
pixels, are cropped as the lesion classifier (``--crop lesion``) was trained to read them
(:mod:`pipeline.crop`) and classified; the image's P(malignant) is its most suspicious lesion's. As
probabilities over the three classes an image is (1, 0, 0) when normal and (0, 1 - p, p) otherwise,
with p the classifier's calibrated P(malignant) renormalized over benign and malignant (it never saw a
normal image). Every figure is of the segmenter's own masks; the true masks are not read. The exported
diagnosis does the same in its graph.

The malignancy cut of the diagnosis is fitted on the classifier's validation fold through the same
segmenter (:func:`diagnosis_cut`), cross-fitted there as every fitted rule is (:mod:`evaluation.cut`),
and saved in the classifier's fold folder under the segmenter's path (one per ``--postprocess``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
from PIL import Image

from config.train import TrainConfig
from core.atomic import write_json
from core.classes import CLASS_NAMES
from data.discover import Case
from data.imageio import read_image
from evaluation.cut import FittedCut, fit_fold_cut
from evaluation.gate import apply_gates
from evaluation.run_files import load_fitted_temperature
from evaluation.seg import scoring_gates
from evaluation.tta import combine_views, model_views, predict_records
from metrics.calibration import apply_temperature
from models.lesions import lesion_bounds_np, to_image
from models.postprocess import postprocess_np
from pipeline.dataset import build_crop_dataset
from reports.plots import lesion_grid

DIAGNOSIS_KEYS = (
    "macro_f1",
    "malignant_auc",
    "sensitivity",
    "specificity",
    "normal_called_normal",
    "lesion_called_normal",
)
"""The diagnosis' main figures, for summary lines."""
Run = tuple[keras.Model, TrainConfig, Path]
"""A loaded run: its model, its config and the (fold) folder holding what it fitted."""


@dataclass(frozen=True)
class Diagnosis:
    """Each image's answer and each lesion found.

    Attributes:
        probs: ``(n, 3)`` over :data:`core.classes.CLASS_NAMES` (normal, benign, malignant).
        lesions: Per image, ``(box, p_malignant)`` of each lesion found, the largest first; box ``[y0, x0, y1,
            x1]`` of the lesion in the image's pixels (end exclusive, scaled from the segmenter's resolution).
    """

    probs: np.ndarray
    lesions: list[list[tuple[list[float], float]]]


def segment(seg: Run, records: Sequence[Case], own_data: bool, tta: bool, postprocess: str = "none") -> np.ndarray:
    """The segmenter's maps of ``records`` ``(n, S, S)`` at its resolution, gated as its run gates them.

    ``own_data`` True scores the segmenter's own validation cases with their cross-fitted half's gate. With
    ``tta`` each view is gated, then the views are combined (:func:`evaluation.tta.combine_views`), then
    post-processed, as :func:`evaluation.seg.evaluate_seg` and the exported diagnosis do.
    """
    model, cfg, fold_dir = seg
    _, truths, views = predict_records(model, records, cfg, "seg", tta)
    ids, labels = [r.case_id for r in records], [r.label for r in records]
    gates, _ = scoring_gates(ids, labels, truths, views[0], fold_dir, fit=False, own_data=own_data)
    probs = postprocess_np(combine_views([apply_gates(v, gates) for v in views], spatial=True), postprocess)
    return probs.reshape(probs.shape[:3])


def find_lesions(records: Sequence[Case], probs: np.ndarray) -> list[np.ndarray]:
    """Each image's lesion boxes ``(k, 4)`` in its own pixels (:mod:`models.lesions`)."""
    found = []
    for case, prob in zip(records, probs, strict=True):
        with Image.open(case.image) as im:
            width, height = im.size
        found.append(to_image(lesion_bounds_np(prob), prob.shape[0], height, width))
    return found


def lesion_p_malignant(lesion: Run, images: Sequence[Path], bounds: np.ndarray, tta: bool) -> np.ndarray:
    """The lesion classifier's calibrated P(malignant) of each lesion (its image, its box), renormalized over
    benign and malignant; its fold's temperature applies to every lesion."""
    model, cfg, fold_dir = lesion
    if not len(images):
        return np.zeros(0)
    views = [model_views(model, x, tta, spatial=False) for x in build_crop_dataset(images, bounds, cfg.pipeline())]
    raw = [np.concatenate(v).astype(np.float64) for v in zip(*views, strict=True)]
    fitted = load_fitted_temperature(fold_dir)
    calibrated = [apply_temperature(v, fitted.temperature) if fitted is not None else v for v in raw]
    probs = combine_views(calibrated, spatial=False)
    benign, malignant = probs[:, CLASS_NAMES.index("benign")], probs[:, CLASS_NAMES.index("malignant")]
    return malignant / np.maximum(benign + malignant, 1e-12)


def diagnose(records: Sequence[Case], bounds: Sequence[np.ndarray], p_lesion: np.ndarray) -> Diagnosis:
    """Each image's three-class answer from its lesions' P(malignant) (``bounds``' order, image after image):
    normal without a lesion, else as suspicious as its most suspicious lesion.

    Raises:
        ValueError: If ``bounds`` holds another number of lesions than ``p_lesion`` scores.
    """
    total = sum(len(b) for b in bounds)
    if total != len(p_lesion):
        raise ValueError(f"{total} lesions found but {len(p_lesion)} classified")
    probs = np.zeros((len(records), len(CLASS_NAMES)))
    probs[:, CLASS_NAMES.index("normal")] = 1.0
    p_iter = iter(np.asarray(p_lesion, float))
    lesions = [[([float(v) for v in box], float(next(p_iter))) for box in b] for b in bounds]
    for k, found in enumerate(lesions):
        if found:
            worst = max(p for _, p in found)
            probs[k] = [0.0, 1.0 - worst, worst]
    return Diagnosis(probs, lesions)


def run_diagnosis(seg: Run, lesion: Run, records: Sequence[Case], own_data: bool, tta: bool, postprocess: str):
    """:func:`segment`, :func:`find_lesions`, :func:`lesion_p_malignant` and :func:`diagnose` of ``records``."""
    bounds = find_lesions(records, segment(seg, records, own_data, tta, postprocess))
    images = [r.image for r, b in zip(records, bounds, strict=True) for _ in b]
    flat = np.concatenate([b for b in bounds if len(b)]) if any(len(b) for b in bounds) else np.zeros((0, 4))
    return diagnose(records, bounds, lesion_p_malignant(lesion, images, flat, tta))


def output_dir(cls_dir: Path, seg_dir: Path, dataset: str, tta: bool = False, postprocess: str = "none") -> Path:
    """Where the diagnosis of ``dataset`` (``own-val``, ``<name>-all``) through ``seg_dir``'s segmenter is written,
    in the classifier's fold folder: ``eval/diagnosis-<segmenter>-<dataset>[-tta][-<postprocess>]``."""
    suffix = ("-tta" if tta else "") + ("" if postprocess == "none" else f"-{postprocess}")
    return Path(cls_dir) / "eval" / f"diagnosis-{Path(seg_dir).resolve().name}-{dataset}{suffix}"


def cut_file(cls_dir: Path, seg_dir: Path, postprocess: str = "none") -> Path:
    """Where the diagnosis' cut through ``seg_dir``'s segmenter (and its ``postprocess``) is saved, in the
    classifier's fold folder."""
    name = Path(seg_dir).resolve().as_posix().strip("/").replace("/", "__")
    return Path(cls_dir) / "diagnosis" / (name + ("" if postprocess == "none" else f"-{postprocess}") + ".json")


def diagnosis_cut(
    records: Sequence[Case],
    probs: np.ndarray,
    cls_dir: Path,
    seg_dir: Path,
    fit: bool,
    target_sensitivity: float,
    postprocess: str = "none",
) -> FittedCut | None:
    """The diagnosis' malignancy cut: fitted on ``records`` (the classifier's validation fold) and saved when
    ``fit``, else the one saved for this segmenter and ``postprocess`` (None if none was)."""
    path = cut_file(cls_dir, seg_dir, postprocess)
    if fit:
        ids, names = [r.case_id for r in records], [r.label for r in records]
        groups = [r.group or r.case_id for r in records]
        p = probs[:, CLASS_NAMES.index("malignant")]
        fitted = fit_fold_cut(ids, names, p, groups, target_sensitivity)
        if fitted is not None:
            write_json(path, {"segmenter": str(Path(seg_dir).resolve()), **fitted.to_dict()})
        return fitted
    return load_diagnosis_cut(cls_dir, seg_dir, postprocess)


def load_diagnosis_cut(cls_dir: Path, seg_dir: Path, postprocess: str = "none") -> FittedCut | None:
    """The diagnosis' cut saved for this segmenter and ``postprocess`` in the classifier's fold folder, or None."""
    path = cut_file(cls_dir, seg_dir, postprocess)
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    halves = tuple((tuple(h["ids"]), h["threshold"]) for h in d["halves"])
    return FittedCut(d["threshold"], halves, d["rule"])


def describe(diagnosis: Diagnosis, records: Sequence[Case]) -> list[dict[str, Any]]:
    """One row per image for ``diagnosis.json``: its label, answer, P(malignant) and lesions."""
    return [
        {
            "case_id": r.case_id,
            "label": r.label,
            "answer": CLASS_NAMES[int(np.argmax(p))],
            "p_malignant": float(p[CLASS_NAMES.index("malignant")]),
            "lesions": [{"box": box, "p_malignant": q} for box, q in found],
        }
        for r, p, found in zip(records, diagnosis.probs, diagnosis.lesions, strict=True)
    ]


def lesion_rows(records: Sequence[Case], diagnosis: Diagnosis, k: int = 5) -> list[tuple[str, list]]:
    """The images of :func:`reports.plots.lesion_grid`: the ``k`` least suspicious cancers (the misses first), the
    ``k`` most suspicious benign images, and the ``k`` normal images given the most suspicious lesion."""
    p = diagnosis.probs[:, CLASS_NAMES.index("malignant")]
    rows = []
    for title, label, sign in (("cancers, least suspicious", "malignant", 1), ("benign, most suspicious", "benign", -1),
                               ("normal, given a lesion", "normal", -1)):  # fmt: skip
        idx = [i for i, r in enumerate(records) if r.label == label and (label != "normal" or diagnosis.lesions[i])]
        panels = []
        for i in sorted(idx, key=lambda i: sign * p[i])[:k]:
            found = diagnosis.lesions[i]
            boxes, q = np.reshape([b for b, _ in found], (-1, 4)), [v for _, v in found]
            caption = f"{records[i].case_id}\nsaid {CLASS_NAMES[int(np.argmax(diagnosis.probs[i]))]}, P(m) {p[i]:.2f}"
            panels.append((read_image(records[i].image), boxes, q, caption))
        rows.append((title, panels))
    return rows


def evaluate_diagnosis(
    seg: Run,
    lesion: Run,
    records: Sequence[Case],
    out_dir: Path,
    own_data: bool,
    fit_cut: bool,
    tta: bool = False,
    postprocess: str = "none",
) -> dict[str, Any]:
    """Diagnose ``records`` with a segmenter and a lesion classifier (each a :data:`Run`) and
    write the classification report of the answers (:func:`evaluation.cls.report_cls`) to ``out_dir``.

    ``metrics.json``'s figures are those of any classifier (three classes, malignant against benign with
    intervals over patients, sensitivity and specificity at the diagnosis' cut), plus ``n_images``,
    ``normal_called_normal`` and ``lesions_found``; ``diagnosis.json`` lists each image's answer and lesions
    (:func:`describe`), and ``plots/lesions.png`` draws them (:func:`lesion_rows`).
    ``fit_cut`` (the classifier's own validation fold) fits the diagnosis' cut (:func:`diagnosis_cut`) and
    scores each half with the other's.
    """
    from evaluation.cls import report_cls
    from metrics.classification import malignancy_report

    diagnosis = run_diagnosis(seg, lesion, records, own_data, tta, postprocess)
    ids, names = [r.case_id for r in records], [r.label for r in records]
    labels = np.array([CLASS_NAMES.index(n) for n in names])
    result = report_cls(ids, labels, diagnosis.probs, out_dir)
    target = lesion[1].target_sensitivity
    fitted = diagnosis_cut(records, diagnosis.probs, lesion[2], seg[2], fit_cut, target, postprocess)
    cuts, how = None, "no cut (evaluate the diagnosis on the lesion classifier's validation fold first)"
    if fitted is not None:
        cuts = fitted.for_cases(ids) if fit_cut else np.full(len(ids), fitted.threshold)
        how = "each half of the validation fold with the other half's cut" if fit_cut else "the validation fold's cut"
    groups = [r.group or r.case_id for r in records]
    result.update(malignancy_report(names, diagnosis.probs, CLASS_NAMES, groups, cuts))
    cut = {"threshold": fitted.threshold if fitted else None, "scored_with": how}
    if fitted is not None:
        cut["rule"] = fitted.rule
    normal = labels == CLASS_NAMES.index("normal")
    called_normal = diagnosis.probs.argmax(1) == CLASS_NAMES.index("normal")
    result.update(
        malignancy_cut=cut,
        normal_called_normal=float(called_normal[normal].mean()) if normal.any() else None,
        n_images=len(records),
        lesions_found=sum(len(found) for found in diagnosis.lesions),
        segmenter=str(seg[2]),
        lesion_classifier=str(lesion[2]),
        tta=tta,
        postprocess=postprocess,
    )
    write_json(out_dir / "diagnosis.json", describe(diagnosis, records))
    lesion_grid(lesion_rows(records, diagnosis), cut["threshold"], out_dir / "plots" / "lesions.png")
    return result
