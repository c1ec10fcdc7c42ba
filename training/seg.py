"""Segmentation's part of training: model, loss, metrics and evaluation report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from data.discover import Case
from losses.segmentation import get_seg_loss
from metrics.segmentation import per_image_scores, seg_metrics
from models.registry import build_model, get_model_entry, model_names
from pipeline.config import PipelineConfig
from pipeline.dataset import build_dataset
from reports.plots import learning_curves, overlay_grid, score_histogram
from reports.stats import bootstrap_ci
from training.config import TrainConfig
from training.trainer import TaskSpec


def build_seg_model(cfg: TrainConfig) -> keras.Model:
    """Build ``cfg.model`` for segmentation; a classifier name raises."""
    if get_model_entry(cfg.model).task != "seg":
        raise ValueError(
            f"`--model` must be a segmentation model {model_names('seg')} for --task seg. Received: model={cfg.model!r}"
        )
    return build_model(
        cfg.model,
        img_size=cfg.img_size,
        channels=cfg.channels,
        base_filters=cfg.base_filters,
        depth=cfg.depth,
        dropout=cfg.dropout,
        norm=cfg.norm,
    )


def predict_seg(
    model: keras.Model, records: Sequence[Case], cfg: TrainConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images, true masks and predicted probabilities of ``records``, in record order."""
    pcfg = PipelineConfig(img_size=cfg.img_size, channels=cfg.channels, batch_size=cfg.batch_size, augment="none")
    images, truths, probs = [], [], []
    for x, y in build_dataset(records, "seg", pcfg, training=False):
        images.append(x.numpy())
        truths.append(y.numpy())
        probs.append(keras.ops.convert_to_numpy(model(x, training=False)))
    return np.concatenate(images), np.concatenate(truths), np.concatenate(probs)


def evaluate_seg(
    model: keras.Model,
    records: Sequence[Case],
    cfg: TrainConfig,
    out_dir: Path,
    history: list[dict[str, float]],
) -> dict[str, Any]:
    """Per-image and pooled Dice/IoU with bootstrap CIs, per class, and the plots."""
    images, truths, probs = predict_seg(model, records, cfg)
    dice, iou = per_image_scores(truths, probs)
    t = truths > 0.5
    p = probs >= 0.5
    inter, total = float((t & p).sum()), float(t.sum() + p.sum())
    labels = [r.label for r in records]
    ids = [r.case_id for r in records]
    result: dict[str, Any] = {
        "dice": float(dice.mean()),
        "dice_ci95": list(bootstrap_ci(dice)),
        "iou": float(iou.mean()),
        "iou_ci95": list(bootstrap_ci(iou)),
        "dice_pooled": 2 * inter / total if total else 1.0,
        "iou_pooled": inter / (total - inter) if total - inter else 1.0,
        "n_images": len(records),
        "per_class": {
            c: {
                "n": int(sum(lbl == c for lbl in labels)),
                "dice": float(dice[np.array(labels) == c].mean()),
                "iou": float(iou[np.array(labels) == c].mean()),
            }
            for c in sorted(set(labels))
        },
        "per_image": [
            {"id": i, "label": lbl, "dice": float(d), "iou": float(j)}
            for i, lbl, d, j in zip(ids, labels, dice, iou, strict=True)
        ],
    }
    plots = out_dir / "plots"
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
    summary_keys=("dice", "iou", "dice_pooled", "iou_pooled"),
)
