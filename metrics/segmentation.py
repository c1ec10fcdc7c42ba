"""Dice and IoU of thresholded masks, per image (averaged over images) and pooled.

Per image, a mask and a prediction that are both empty score 1 (a normal image
correctly left empty is a perfect answer). Pooled scores sum intersections and
unions over every pixel of every image first; they are 1 when everything is empty.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

THRESHOLD = 0.5


def _counts(y_true, y_pred, threshold: float):
    batch = ops.shape(y_pred)[0]
    t = ops.reshape(ops.cast(ops.cast(y_true, "float32") > 0.5, "float32"), (batch, -1))
    p = ops.reshape(ops.cast(ops.cast(y_pred, "float32") >= threshold, "float32"), (batch, -1))
    inter = ops.sum(t * p, axis=1)
    total = ops.sum(t, axis=1) + ops.sum(p, axis=1)
    return inter, total


def _score(kind: str, inter, total):
    denom = total if kind == "dice" else total - inter
    num = 2.0 * inter if kind == "dice" else inter
    return ops.where(denom > 0, num / ops.maximum(denom, 1.0), ops.ones_like(denom))


@keras.saving.register_keras_serializable(package="busi")
class OverlapScore(keras.metrics.Metric):
    """Dice or IoU of masks thresholded at ``threshold``.

    Args:
        kind: ``"dice"`` or ``"iou"``.
        per_image: Average the score of each image (True) or pool all pixels (False).
        threshold: Probability at which a pixel counts as lesion.
    """

    def __init__(
        self,
        kind: str = "dice",
        per_image: bool = True,
        threshold: float = THRESHOLD,
        name: str | None = None,
        **kwargs,
    ) -> None:
        if kind not in ("dice", "iou"):
            raise ValueError(f"`kind` must be 'dice' or 'iou'. Received: kind={kind!r}")
        super().__init__(name=name or (kind if per_image else f"{kind}_pooled"), **kwargs)
        self.kind, self.per_image, self.threshold = kind, per_image, threshold
        self.a = self.add_variable(shape=(), initializer="zeros", name="a", dtype="float32")
        self.b = self.add_variable(shape=(), initializer="zeros", name="b", dtype="float32")

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        inter, total = _counts(y_true, y_pred, self.threshold)
        if self.per_image:  # a: sum of per-image scores, b: number of images
            self.a.assign_add(ops.sum(_score(self.kind, inter, total)))
            self.b.assign_add(ops.cast(ops.shape(inter)[0], "float32"))
        else:  # a: sum of intersections, b: sum of |t| + |p|
            self.a.assign_add(ops.sum(inter))
            self.b.assign_add(ops.sum(total))

    def result(self):
        if self.per_image:
            return ops.where(self.b > 0, self.a / ops.maximum(self.b, 1.0), 0.0)
        return _score(self.kind, self.a, self.b)

    def reset_state(self) -> None:
        self.a.assign(0.0)
        self.b.assign(0.0)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "kind": self.kind,
            "per_image": self.per_image,
            "threshold": self.threshold,
        }


def seg_metrics(threshold: float = THRESHOLD) -> list[keras.metrics.Metric]:
    """The four segmentation metrics: per-image and pooled Dice and IoU."""
    return [
        OverlapScore("dice", True, threshold),
        OverlapScore("iou", True, threshold),
        OverlapScore("dice", False, threshold),
        OverlapScore("iou", False, threshold),
    ]


def per_image_scores(
    y_true: np.ndarray, y_pred: np.ndarray, threshold: float = THRESHOLD
) -> tuple[np.ndarray, np.ndarray]:
    """NumPy Dice and IoU of each image (for reports and histograms).

    Args:
        y_true: Masks ``(N, H, W[, 1])`` of 0/1.
        y_pred: Probabilities of the same shape.
        threshold: Probability at which a pixel counts as lesion.

    Returns:
        ``(dice, iou)``, each of shape ``(N,)``; 1 where both are empty.
    """
    n = y_true.shape[0]
    t = y_true.reshape(n, -1) > 0.5
    p = y_pred.reshape(n, -1) >= threshold
    inter = (t & p).sum(axis=1).astype(np.float64)
    total = t.sum(axis=1) + p.sum(axis=1).astype(np.float64)
    union = total - inter
    dice = np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0)
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return dice, iou
