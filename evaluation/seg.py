"""How a segmentation run is scored: predict, gate, score with intervals, break down, plot.

:func:`evaluate_seg` is the task's :class:`evaluation.base.Evaluator`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
from PIL import Image

from config.train import TrainConfig
from core.errors import DataError
from data.discover import Case
from data.scan import merge_masks
from data.sources import breakdowns
from evaluation.adapted import adapted_gate
from evaluation.base import EvalRequest, scored_with
from evaluation.gate import FittedGate, apply_gates, fit_fold_gate
from evaluation.run_files import load_fitted_gate, save_gate
from evaluation.shift import shift_report
from evaluation.support import Basis
from evaluation.tta import combine_views, predict_records
from metrics.segmentation import per_image_scores
from models.postprocess import MASK_THRESHOLD, NO_GATE, LesionGate, count_lesions, postprocess_np, resize_to_native
from reports.plots import breakdown_plot, learning_curves, overlay_grid, score_histogram
from reports.stats import BREAKDOWN_BOOT, group_bootstrap_ci, wilson_ci

SUMMARY_KEYS = (
    "dice",
    "iou",
    "dice_pooled",
    "iou_pooled",
    "lesion_dice",
    "dice_native",
    "lesion_dice_native",
    "normal_left_empty",
    "lesion_left_empty",
)
"""The segmentation figures of a run's summary line and cross-validation summary."""


def _empty(probs: np.ndarray) -> np.ndarray:
    """Whether each map has no pixel at or above the mask threshold."""
    return ~(probs.reshape(probs.shape[0], -1) >= MASK_THRESHOLD).any(axis=1)


def empty_answers(truths: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """How often normal images (empty true mask) are left empty and lesion images wrongly so, with 95% CIs."""
    n = truths.shape[0]
    has_lesion = truths.reshape(n, -1).max(axis=1) > 0.5
    empty = _empty(probs)
    out: dict[str, Any] = {}
    for key, group in (("normal_left_empty", ~has_lesion), ("lesion_left_empty", has_lesion)):
        k, m = int((empty & group).sum()), int(group.sum())
        out[key] = k / m if m else None
        out[f"{key}_ci95"] = list(wilson_ci(k, m)) if m else None
        out[f"{key}_n"] = m
    return out


def lesion_counts(truths: np.ndarray, counts: np.ndarray) -> dict[str, Any]:
    """Summary of the lesions each predicted mask holds (``counts``), on normal images and on lesion images.

    ``normal_mean`` is the mean count on normal images (empty true mask: every lesion a false positive);
    ``lesion_several`` the share of lesion images whose mask has more than one lesion, ``lesion_mean`` their
    mean count. None without such images.
    """
    n = truths.shape[0]
    has_lesion = truths.reshape(n, -1).max(axis=1) > 0.5
    normal, lesion = counts[~has_lesion], counts[has_lesion]
    return {
        "normal_mean": float(normal.mean()) if normal.size else None,
        "lesion_mean": float(lesion.mean()) if lesion.size else None,
        "lesion_several": float((lesion > 1).mean()) if lesion.size else None,
    }


def _lesion_dice(dice: np.ndarray, truths: np.ndarray, groups: np.ndarray) -> dict[str, Any]:
    has_lesion = truths.reshape(truths.shape[0], -1).max(axis=1) > 0.5
    if not has_lesion.any():
        return {"lesion_dice": None, "lesion_dice_ci95": None}
    ci = group_bootstrap_ci(dice[has_lesion], groups[has_lesion])
    return {"lesion_dice": float(dice[has_lesion].mean()), "lesion_dice_ci95": list(ci)}


def seg_breakdowns(records: Sequence[Case], dice: np.ndarray, truths: np.ndarray, groups: np.ndarray) -> dict[str, Any]:
    """Dice (and lesion Dice, and the share of images below 0.5) per site and per scanner."""

    def entry(idx: np.ndarray) -> dict[str, Any]:
        return {
            "n": len(idx),
            "dice": float(dice[idx].mean()),
            "dice_ci95": list(group_bootstrap_ci(dice[idx], groups[idx], n_boot=BREAKDOWN_BOOT)),
            "below_0.5": float((dice[idx] < 0.5).mean()),
            **_lesion_dice(dice[idx], truths[idx], groups[idx]),
        }

    return breakdowns(records, entry)


FOLD_GATE = "the gate fitted on the run's validation fold"


def scoring_gates(
    ids: Sequence[str],
    labels: Sequence[str],
    truths: np.ndarray,
    probs: np.ndarray,
    fold_dir: Path | None,
    fit: bool,
    own_data: bool = True,
    adapted: tuple[FittedGate, Basis] | None = None,
) -> tuple[list[LesionGate], dict[str, Any]]:
    """The gate that scores each case, and what to report about it.

    ``fit`` (training's evaluation of the validation fold) fits the fold's gate here and saves it
    in ``fold_dir``; otherwise the gate saved in ``fold_dir`` is used (none if the run has none).
    Cases the gate was fitted on are scored with their cross-fitted half's gate; ``own_data`` False
    (another dataset, whose ids may collide with the run's) scores every case with the fold's gate.
    ``adapted`` (an adapted run's fit, :func:`evaluation.adapted.adapted_gate`) is used in place of fitting.
    """
    if adapted is not None:
        fitted = adapted[0]
    else:
        fitted = fit_fold_gate(ids, labels, truths, probs) if fit else load_fitted_gate(fold_dir) if fold_dir else None
    if fitted is None:
        return [NO_GATE] * len(ids), {"gate": None, "scored_with": "no gate (the run has none)"}
    if fit and fold_dir is not None:
        save_gate(fold_dir, fitted)
    basis = {"basis": adapted[1].to_dict()} if adapted is not None else {}
    if not own_data:
        return [fitted.gate] * len(ids), {"gate": fitted.gate.to_dict(), "scored_with": FOLD_GATE, **basis}
    how = scored_with(ids, {i for members, _ in fitted.halves for i in members}, "gate fitted", FOLD_GATE)
    return fitted.for_cases(ids), {"gate": fitted.gate.to_dict(), "scored_with": how, **basis}


def native_scores(records: Sequence[Case], probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image Dice and IoU at each image's own size: the map resized as ``predict.py`` resizes it
    (:func:`models.postprocess.resize_to_native`), thresholded, against the true mask as drawn.

    Raises:
        DataError: If a mask cannot be read or is not the size of its image.
    """
    dice, iou = np.ones(len(records)), np.ones(len(records))
    for k, (case, prob) in enumerate(zip(records, probs, strict=True)):
        with Image.open(case.image) as im:
            width, height = im.size
        truth, _, problems = merge_masks(case, (height, width))
        if problems:
            raise DataError(problems)
        native = resize_to_native(prob, height, width)
        d, j = per_image_scores(truth[None].astype(np.float32), native[None])
        dice[k], iou[k] = d[0], j[0]
    return dice, iou


def _native(records: Sequence[Case], probs: np.ndarray, truths: np.ndarray, groups: np.ndarray) -> dict:
    dice, iou = native_scores(records, probs)
    lesion = _lesion_dice(dice, truths, groups)
    return {
        "dice_native": float(dice.mean()),
        "dice_native_ci95": list(group_bootstrap_ci(dice, groups)),
        "iou_native": float(iou.mean()),
        "iou_native_ci95": list(group_bootstrap_ci(iou, groups)),
        "lesion_dice_native": lesion["lesion_dice"],
        "lesion_dice_native_ci95": lesion["lesion_dice_ci95"],
        "per_image_native": dice,
    }


def _scores(dice: np.ndarray, iou: np.ndarray, truths: np.ndarray, probs: np.ndarray, groups: np.ndarray) -> dict:
    """Mean and pooled Dice and IoU with intervals over patients, lesion Dice and the empty answers."""
    t = truths > 0.5
    p = probs >= MASK_THRESHOLD
    inter, total = float((t & p).sum()), float(t.sum() + p.sum())
    return {
        "dice": float(dice.mean()),
        "dice_ci95": list(group_bootstrap_ci(dice, groups)),
        "dice_below_0.5": float((dice < 0.5).mean()),
        "iou": float(iou.mean()),
        "iou_ci95": list(group_bootstrap_ci(iou, groups)),
        "dice_pooled": 2 * inter / total if total else 1.0,
        "iou_pooled": inter / (total - inter) if total - inter else 1.0,
        **_lesion_dice(dice, truths, groups),
        **empty_answers(truths, probs),
    }


def _per_class(labels: Sequence[str], dice: np.ndarray, iou: np.ndarray) -> dict[str, Any]:
    arr = np.array(labels)
    return {
        c: {"n": int((arr == c).sum()), "dice": float(dice[arr == c].mean()), "iou": float(iou[arr == c].mean())}
        for c in sorted(set(labels))
    }


def _per_image(ids, labels, dice, iou, probs, counts, raw_dice, raw, native) -> list[dict[str, Any]]:
    rows = zip(ids, labels, dice, iou, _empty(probs), counts, raw_dice, _empty(raw), native, strict=True)
    return [
        {"id": i, "label": lbl, "dice": float(d), "iou": float(j), "empty": bool(e), "lesions": int(c),
         "dice_ungated": float(r), "empty_ungated": bool(re), "dice_native": float(n)}
        for i, lbl, d, j, e, c, r, re, n in rows
    ]  # fmt: skip


def _plots(result: dict, history, images, truths, probs, ids, dice, labels, out_dir: Path) -> None:
    plots = out_dir / "plots"
    breakdown_plot(result, "dice", plots / "by_site_and_scanner.png", "Dice per image")
    if history:
        learning_curves(list(history), plots / "learning_curves.png", "dice")
    score_histogram(dice, labels, plots / "dice_histogram.png")
    overlay_grid(images, truths, probs, ids, dice, plots / "best_worst.png")


def evaluate_seg(model: keras.Model, cfg: TrainConfig, request: EvalRequest) -> dict[str, Any]:
    """Per-image and pooled Dice/IoU with bootstrap CIs, per class, site and scanner, empty answers, and the plots.

    Intervals resample whole patients (a case's ``group``; each image its own when there is none).

    Every score is of the gated maps (see :func:`scoring_gates` for ``fold_dir``, ``fit`` and
    ``own_data``); ``ungated`` holds the main scores of the model's raw maps beside them. ``tta``
    gates each map and its mirrored image's, then combines them as ``predict.py --tta`` does
    (:func:`evaluation.tta.combine_views`: a lesion only where both views keep one).
    ``postprocess`` (:func:`models.postprocess.postprocess_np`) cleans the gated maps before scoring;
    ``ungated`` stays the raw maps'. ``lesions`` counts the lesions (8-connected) left in each mask.
    The figures are at the model's resolution; ``dice_native``, ``iou_native`` and ``lesion_dice_native``
    score the same maps at each image's own size, as ``predict.py`` writes them (:func:`native_scores`).
    """
    records, fit = list(request.records), request.fit and cfg.lesion_gate
    images, truths, views = predict_records(model, records, cfg, "seg", request.tta)  # a map per view
    raw = combine_views(views, spatial=True)
    labels, ids = [r.label for r in records], [r.case_id for r in records]
    groups = np.array([r.group or r.case_id for r in records], dtype=object)
    adapted = adapted_gate(model, cfg, ids, labels, truths, raw, request.source) if fit and request.source else None
    gates, gate_info = scoring_gates(ids, labels, truths, raw, request.fold_dir, fit, request.own_data, adapted)
    gated = combine_views([apply_gates(v, gates) for v in views], spatial=True)
    probs = postprocess_np(gated, request.postprocess)
    dice, iou = per_image_scores(truths, probs)
    counts = count_lesions(probs)
    raw_dice, _ = per_image_scores(truths, raw)
    native = _native(records, probs, truths, groups)
    flags, shift = shift_report(records, request.fold_dir if request.shift else None)
    result: dict[str, Any] = {
        **_scores(dice, iou, truths, probs, groups),
        **{k: v for k, v in native.items() if k != "per_image_native"},
        "n_images": len(records),
        "tta": request.tta,
        "postprocess": request.postprocess,
        "lesions": lesion_counts(truths, counts),
        "lesion_gate": gate_info,
        "ungated": {
            "dice": float(raw_dice.mean()),
            **_lesion_dice(raw_dice, truths, groups),
            **empty_answers(truths, raw),
        },
        **seg_breakdowns(records, dice, truths, groups),
        "per_class": _per_class(labels, dice, iou),
        "per_image": _per_image(ids, labels, dice, iou, probs, counts, raw_dice, raw, native["per_image_native"]),
        "shift": shift,
    }
    for entry, flag in zip(result["per_image"], flags, strict=True):
        entry["shift"] = flag
    _plots(result, request.history, images, truths, probs, ids, dice, labels, request.out_dir)
    return result
