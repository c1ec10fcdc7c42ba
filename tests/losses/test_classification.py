"""Classification losses against hand-computed values."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from losses.classification import WeightedCategoricalCrossentropy, focal_alpha, get_cls_loss

LABELS = ["normal", "benign", "benign", "malignant"]  # counts 1, 2, 1
Y = np.array([[1, 0, 0], [0, 0, 1]], dtype="float32")
P = np.array([[0.6, 0.3, 0.1], [0.2, 0.3, 0.5]], dtype="float32")


def _value(loss, y=Y, p=P) -> float:
    return float(keras.ops.convert_to_numpy(loss(y, p)))


def test_focal_alpha_is_normalized_inverse_frequency() -> None:
    assert focal_alpha(LABELS) == pytest.approx([0.4, 0.2, 0.4])  # 1/.25, 1/.5, 1/.25 over their sum 10
    assert focal_alpha(["benign", "malignant"]) == pytest.approx([0.0, 0.5, 0.5])  # absent class: 0


def test_focal_loss_matches_hand_computation() -> None:
    loss = get_cls_loss("focal", LABELS, gamma=2.0)
    # -alpha_c (1 - p_c)^gamma log p_c of the true class, averaged over the batch
    expected = (0.4 * 0.4**2 * -math.log(0.6) + 0.4 * 0.5**2 * -math.log(0.5)) / 2
    assert _value(loss) == pytest.approx(expected, rel=1e-5)
    assert _value(get_cls_loss("focal", LABELS, gamma=0.0)) == pytest.approx(
        (0.4 * -math.log(0.6) + 0.4 * -math.log(0.5)) / 2, rel=1e-5
    )


def test_weighted_ce_uses_balanced_class_weights() -> None:
    loss = get_cls_loss("weighted_ce", LABELS)
    assert loss.class_weights == pytest.approx([4 / 3, 4 / 6, 4 / 3])  # n / (k n_c)
    assert _value(loss) == pytest.approx((4 / 3 * -math.log(0.6) + 4 / 3 * -math.log(0.5)) / 2, rel=1e-5)


def test_label_smoothing_and_plain_ce() -> None:
    assert _value(get_cls_loss("ce", LABELS)) == pytest.approx((-math.log(0.6) - math.log(0.5)) / 2, rel=1e-5)
    smooth = get_cls_loss("weighted_ce", ["benign", "malignant", "normal"], label_smoothing=0.3)
    t = 0.7 * Y + 0.1  # (1 - 0.3) y + 0.3 / 3
    assert _value(smooth) == pytest.approx(float(np.mean(-(t * np.log(P)).sum(-1))), rel=1e-5)


def test_weighted_ce_serializes() -> None:
    loss = WeightedCategoricalCrossentropy([1.0, 2.0, 3.0], label_smoothing=0.1)
    back = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(back, WeightedCategoricalCrossentropy)
    assert back.class_weights == [1.0, 2.0, 3.0] and back.label_smoothing == 0.1


def test_bad_arguments_are_clear() -> None:
    with pytest.raises(ValueError, match="ce, weighted_ce, focal|'ce', 'weighted_ce', 'focal'"):
        get_cls_loss("bce_dice", LABELS)
    with pytest.raises(ValueError, match="gamma"):
        get_cls_loss("focal", LABELS, gamma=-1)
    with pytest.raises(ValueError, match="label_smoothing"):
        get_cls_loss("ce", LABELS, label_smoothing=1.0)
