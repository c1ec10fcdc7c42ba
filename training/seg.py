"""Segmentation's part of training: model, loss, metrics and evaluation report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import keras
import numpy as np

from data.discover import Case
from data.sources import breakdowns
from losses.segmentation import get_seg_loss
from metrics.segmentation import per_image_scores, seg_metrics
from models.classifier import check_weights, load_weights_file
from models.postprocess import MASK_THRESHOLD, NO_GATE, LesionGate, count_lesions, postprocess_np
from models.registry import architecture_options, build_model, get_model_entry, model_names
from pipeline.config import PipelineConfig
from pipeline.dataset import build_dataset
from reports.plots import breakdown_plot, learning_curves, overlay_grid, score_histogram
from reports.stats import BREAKDOWN_BOOT, group_bootstrap_ci, wilson_ci
from training.config import TrainConfig
from training.gate import apply_gates, fit_fold_gate, load_fitted, save_fitted
from training.trainer import TaskSpec
from training.tta import predict_views


def hub_options(cfg: TrainConfig) -> dict:
    """Builder arguments of a keras-hub segmenter (:mod:`models.hub`) from ``cfg``.

    Raises:
        ValueError: If ``cfg`` sets an option such a model does not have (``--base-filters``,
            ``--depth``, ``--norm``) or an architecture option it lacks, rather than ignoring it.
    """
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    changed = [f"--{k.replace('_', '-')}" for k in ("base_filters", "depth", "norm") if getattr(cfg, k) != defaults[k]]
    if changed:
        raise ValueError(f"{' '.join(changed)} set the U-Net's layers; --model {cfg.model} has none of them")
    return {**_model_options(cfg), "weights": cfg.weights, **architecture_options(cfg.model, cfg.architecture())}


def _model_options(cfg: TrainConfig) -> dict:
    """The builder options every segmentation model takes from the run's config."""
    return dict(
        img_size=cfg.img_size,
        channels=cfg.channels,
        dropout=cfg.dropout,
        presence_head=cfg.presence_head,
        input_norm=cfg.input_norm,
    )


def build_seg_model(cfg: TrainConfig) -> keras.Model:
    """Build ``cfg.model`` for segmentation, starting from ``cfg.weights`` when it names a file.

    A file (another run's ``weights/best.keras``, say) must hold the same architecture: model,
    ``base_filters``, ``depth``, ``norm`` and ``presence_head``; the input size may differ.
    A keras-hub model (SegFormer) takes its weights itself, a keras-hub preset among them.

    Raises:
        ValueError: On a classifier name, ``--weights imagenet`` (no segmentation model has ImageNet
            weights), a weights file of another architecture, or U-Net options for a keras-hub model.
        FileNotFoundError: If the weights file does not exist.
    """
    if get_model_entry(cfg.model).task != "seg":
        raise ValueError(
            f"`--model` must be a segmentation model {model_names('seg')} for --task seg. Received: model={cfg.model!r}"
        )
    if get_model_entry(cfg.model).hub:
        return build_model(cfg.model, **hub_options(cfg))
    if cfg.weights == "imagenet":
        raise ValueError(
            "`--weights imagenet` is for classifiers; a segmentation run takes none or a .keras / .weights.h5 "
            "file of the same model (e.g. another run's weights/best.keras)"
        )
    check_weights(cfg.weights)
    model = build_model(
        cfg.model,
        **_model_options(cfg),
        base_filters=cfg.base_filters,
        depth=cfg.depth,
        norm=cfg.norm,
        **architecture_options(cfg.model, cfg.architecture()),  # raises on an option the model lacks
    )
    if cfg.weights != "none":
        try:
            load_weights_file(model, cfg.weights)
        except ValueError as e:
            raise ValueError(
                f"`--weights {cfg.weights}` does not fit --model {cfg.model} with --base-filters "
                f"{cfg.base_filters}, --depth {cfg.depth}, --norm {cfg.norm}, presence head {cfg.presence_head}: "
                f"train with the options of the run that wrote it ({e})"
            ) from e
        print(f"started from the weights of {cfg.weights}")
    return model


def predict_seg(
    model: keras.Model, records: Sequence[Case], cfg: TrainConfig, tta: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images, true masks and predicted probabilities of ``records``, in record order.

    ``tta`` averages each map with the map of the mirrored image (:func:`training.tta.predict_views`).
    """
    pcfg = PipelineConfig(img_size=cfg.img_size, channels=cfg.channels, batch_size=cfg.batch_size, augment="none")
    images, truths, probs = [], [], []
    for x, y in build_dataset(records, "seg", pcfg, training=False):
        images.append(x.numpy())
        truths.append(y.numpy())
        probs.append(predict_views(model, x, tta, spatial=True))
    return np.concatenate(images), np.concatenate(truths), np.concatenate(probs)


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
) -> tuple[list[LesionGate], dict[str, Any]]:
    """The gate that scores each case, and what to report about it.

    ``fit`` (training's evaluation of the validation fold) fits the fold's gate here and saves it
    in ``fold_dir``; otherwise the gate saved in ``fold_dir`` is used (none if the run has none).
    Cases the gate was fitted on are scored with their cross-fitted half's gate; ``own_data`` False
    (another dataset, whose ids may collide with the run's) scores every case with the fold's gate.
    """
    fitted = fit_fold_gate(ids, labels, truths, probs) if fit else load_fitted(fold_dir) if fold_dir else None
    if fitted is None:
        return [NO_GATE] * len(ids), {"gate": None, "scored_with": "no gate (the run has none)"}
    if fit and fold_dir is not None:
        save_fitted(fold_dir, fitted)
    if not own_data:
        return [fitted.gate] * len(ids), {"gate": fitted.gate.to_dict(), "scored_with": FOLD_GATE}
    gates = fitted.for_cases(ids)
    halves_ids = {i for members, _ in fitted.halves for i in members}
    crossed = sum(i in halves_ids for i in ids)
    how = (
        "each half of the validation fold with the gate fitted on the other half"
        if crossed == len(ids)
        else FOLD_GATE
        if crossed == 0
        else f"{crossed} case(s) the gate was fitted on with cross-fitted gates, the rest with the fold's gate"
    )
    return gates, {"gate": fitted.gate.to_dict(), "scored_with": how}


def evaluate_seg(
    model: keras.Model,
    records: Sequence[Case],
    cfg: TrainConfig,
    out_dir: Path,
    history: list[dict[str, float]],
    fold_dir: Path | None = None,
    fit: bool = False,
    own_data: bool = True,
    tta: bool = False,
    postprocess: str = "none",
) -> dict[str, Any]:
    """Per-image and pooled Dice/IoU with bootstrap CIs, per class, site and scanner, empty answers, and the plots.

    Intervals resample whole patients (a case's ``group``; each image its own when there is none).

    Every score is of the gated maps (see :func:`scoring_gates` for ``fold_dir``, ``fit`` and
    ``own_data``); ``ungated`` holds the main scores of the model's raw maps beside them. ``tta``
    scores the mean of each map and its mirrored image's (the gate, fitted without, applies to it).
    ``postprocess`` (:func:`models.postprocess.postprocess_np`) cleans the gated maps before scoring;
    ``ungated`` stays the raw maps'. ``lesions`` counts the lesions (8-connected) left in each mask.
    """
    images, truths, raw = predict_seg(model, records, cfg, tta)
    labels = [r.label for r in records]
    ids = [r.case_id for r in records]
    groups = np.array([r.group or r.case_id for r in records], dtype=object)
    gates, gate_info = scoring_gates(ids, labels, truths, raw, fold_dir, fit and cfg.lesion_gate, own_data)
    probs = postprocess_np(apply_gates(raw, gates), postprocess)
    dice, iou = per_image_scores(truths, probs)
    counts = count_lesions(probs)
    raw_dice, _ = per_image_scores(truths, raw)
    t = truths > 0.5
    p = probs >= MASK_THRESHOLD
    inter, total = float((t & p).sum()), float(t.sum() + p.sum())
    result: dict[str, Any] = {
        "dice": float(dice.mean()),
        "dice_ci95": list(group_bootstrap_ci(dice, groups)),
        "dice_below_0.5": float((dice < 0.5).mean()),
        "iou": float(iou.mean()),
        "iou_ci95": list(group_bootstrap_ci(iou, groups)),
        "dice_pooled": 2 * inter / total if total else 1.0,
        "iou_pooled": inter / (total - inter) if total - inter else 1.0,
        **_lesion_dice(dice, truths, groups),
        **empty_answers(truths, probs),
        "n_images": len(records),
        "tta": tta,
        "postprocess": postprocess,
        "lesions": lesion_counts(truths, counts),
        "lesion_gate": gate_info,
        "ungated": {
            "dice": float(raw_dice.mean()),
            **_lesion_dice(raw_dice, truths, groups),
            **empty_answers(truths, raw),
        },
        **seg_breakdowns(records, dice, truths, groups),
        "per_class": {
            c: {
                "n": int(sum(lbl == c for lbl in labels)),
                "dice": float(dice[np.array(labels) == c].mean()),
                "iou": float(iou[np.array(labels) == c].mean()),
            }
            for c in sorted(set(labels))
        },
        "per_image": [
            {
                "id": i,
                "label": lbl,
                "dice": float(d),
                "iou": float(j),
                "empty": bool(e),
                "lesions": int(c),
                "dice_ungated": float(r),
                "empty_ungated": bool(re),
            }
            for i, lbl, d, j, e, c, r, re in zip(
                ids, labels, dice, iou, _empty(probs), counts, raw_dice, _empty(raw), strict=True
            )
        ],
    }
    plots = out_dir / "plots"
    breakdown_plot(result, "dice", plots / "by_site_and_scanner.png", "Dice per image")
    if history:
        learning_curves(history, plots / "learning_curves.png", "dice")
    score_histogram(dice, labels, plots / "dice_histogram.png")
    overlay_grid(images, truths, probs, ids, dice, plots / "best_worst.png")
    return result


SEG_SPEC = TaskSpec(
    monitor="val_dice",
    mode="max",
    build_model=build_seg_model,
    loss=lambda cfg, _records: get_seg_loss(cfg.loss),
    metrics=lambda cfg: seg_metrics(),
    evaluate=evaluate_seg,
    summary_keys=("dice", "iou", "dice_pooled", "iou_pooled", "lesion_dice", "normal_left_empty", "lesion_left_empty"),
)
