"""Dice and IoU metrics against hand-computed values."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from metrics.segmentation import OverlapScore, per_image_scores, seg_metrics

# Image 1: t = 1100, p thresholded = 1010 -> inter 1, |t| + |p| = 4: dice 1/2, iou 1/3.
# Image 2: both empty -> dice 1, iou 1.
T = np.array([[1, 1, 0, 0], [0, 0, 0, 0]], np.float32)[:, :, None, None]
P = np.array([[0.9, 0.2, 0.7, 0.1], [0.1, 0.0, 0.4, 0.49]], np.float32)[:, :, None, None]


def _result(metric) -> float:
    return float(keras.ops.convert_to_numpy(metric.result()))


@pytest.mark.parametrize(
    "kind,per_image,expected",
    [("dice", True, 0.75), ("iou", True, (1 / 3 + 1) / 2), ("dice", False, 0.5), ("iou", False, 1 / 3)],
)
def test_overlap_hand_computed(kind, per_image, expected) -> None:
    m = OverlapScore(kind, per_image)
    m.update_state(T, P)
    assert _result(m) == pytest.approx(expected, abs=1e-6)


def test_state_accumulates_over_batches_and_resets() -> None:
    m = OverlapScore("dice", True)
    m.update_state(T[:1], P[:1])
    m.update_state(T[1:], P[1:])
    assert _result(m) == pytest.approx(0.75)
    m.reset_state()
    m.update_state(T[:1], P[:1])
    assert _result(m) == pytest.approx(0.5)


def test_all_empty_pooled_scores_one() -> None:
    m = OverlapScore("iou", per_image=False)
    m.update_state(np.zeros((2, 4, 4, 1)), np.zeros((2, 4, 4, 1)))
    assert _result(m) == 1.0


def test_numpy_scores_match_keras_metrics() -> None:
    rng = np.random.default_rng(0)
    t = (rng.random((6, 8, 8, 1)) > 0.7).astype(np.float32)
    t[0] = 0
    p = rng.random((6, 8, 8, 1)).astype(np.float32)
    dice, iou = per_image_scores(t, p)
    metrics = {m.name: m for m in seg_metrics()}
    for m in metrics.values():
        m.update_state(t, p)
    assert _result(metrics["dice"]) == pytest.approx(dice.mean(), abs=1e-6)
    assert _result(metrics["iou"]) == pytest.approx(iou.mean(), abs=1e-6)
    assert set(metrics) == {"dice", "iou", "dice_pooled", "iou_pooled"}


def test_metric_round_trips_config() -> None:
    m = OverlapScore("iou", per_image=False, threshold=0.3)
    again = OverlapScore.from_config(m.get_config())
    assert (again.kind, again.per_image, again.threshold, again.name) == ("iou", False, 0.3, "iou_pooled")
