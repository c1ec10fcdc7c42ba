"""Segmentation losses against hand-computed values, and their serialization."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from losses.segmentation import (
    BceDiceLoss,
    FocalTverskyLoss,
    SoftDiceLoss,
    get_seg_loss,
)


def _t(rows) -> np.ndarray:
    """Batch of 1-D 'images' shaped (B, N, 1, 1) like masks."""
    return np.asarray(rows, np.float32)[:, :, None, None]


def _val(x) -> float:
    return float(keras.ops.convert_to_numpy(x))


def test_soft_dice_hand_computed() -> None:
    # inter = 0.5, |t| = 1, |p| = 1, smooth 1: dice = (1 + 1) / (2 + 1) = 2/3
    loss = SoftDiceLoss()(_t([[1, 0, 0, 0]]), _t([[0.5, 0, 0, 0.5]]))
    assert _val(loss) == pytest.approx(1 / 3, abs=1e-6)


def test_empty_mask_predicted_empty_costs_nothing() -> None:
    assert _val(SoftDiceLoss()(_t([[0, 0, 0, 0]]), _t([[0, 0, 0, 0]]))) == pytest.approx(0.0)
    # keras.losses.Dice charges a full loss for the same perfect answer: why we do not use it.
    assert _val(keras.losses.Dice()(_t([[0, 0, 0, 0]]), _t([[0, 0, 0, 0]]))) == pytest.approx(1.0)


def test_dice_is_averaged_per_image_not_pooled() -> None:
    # Image A: big lesion found exactly (dice 1). Image B: one-pixel lesion missed.
    t = _t([[1] * 99 + [0], [1] + [0] * 99])
    p = _t([[1] * 99 + [0], [0] * 100])
    per_image = _val(SoftDiceLoss(smooth=1e-6)(t, p))
    assert per_image == pytest.approx(0.5, abs=1e-4)  # mean of losses 0 and 1
    pooled = 1 - 2 * 99 / (100 + 99)
    assert abs(per_image - pooled) > 0.4


def test_bce_dice_hand_computed() -> None:
    t, p = _t([[1, 0]]), _t([[0.8, 0.2]])
    bce = -np.log(0.8)  # both pixels are off by 0.2
    dice = (2 * 0.8 + 1) / (1 + 1.0 + 1)
    expected = bce + (1 - dice)
    assert _val(BceDiceLoss()(t, p)) == pytest.approx(expected, abs=1e-5)
    weighted = 0.5 * bce + 2.0 * (1 - dice)
    assert _val(BceDiceLoss(bce_weight=0.5, dice_weight=2.0)(t, p)) == pytest.approx(weighted, abs=1e-5)


def test_bce_dice_uses_the_logits_behind_a_sigmoid_output() -> None:
    # A lesion predicted background with logit -20: cross-entropy is 20 per pixel and the gradient
    # -1/N per logit. From clipped probabilities it would be 16.1 and no gradient at all.
    logits = tf.Variable(np.full((1, 4, 4, 1), -20.0, np.float32))
    with tf.GradientTape() as tape:
        loss = BceDiceLoss(dice_weight=0.0)(np.ones((1, 4, 4, 1), np.float32), keras.activations.sigmoid(logits))
    assert _val(loss) == pytest.approx(20.0, rel=1e-5)
    np.testing.assert_allclose(tape.gradient(loss, logits).numpy(), -1 / 16, rtol=1e-4)


def test_focal_tversky_hand_computed() -> None:
    # tp = 1, fn = 1, fp = 1; TI = (1 + 1) / (1 + 0.7 + 0.3 + 1) = 2/3; loss = (1/3) ** 0.75
    loss = FocalTverskyLoss()(_t([[1, 1, 0, 0]]), _t([[1, 0, 1, 0]]))
    assert _val(loss) == pytest.approx((1 / 3) ** 0.75, abs=1e-6)
    # alpha > beta: a missed pixel costs more than a false alarm.
    ft = FocalTverskyLoss(gamma=1.0, smooth=1e-6)
    miss = _val(ft(_t([[1, 1, 0, 0]]), _t([[1, 0, 0, 0]])))
    alarm = _val(ft(_t([[1, 0, 0, 0]]), _t([[1, 1, 0, 0]])))
    assert miss > alarm


@pytest.mark.parametrize("name", ["dice", "bce_dice", "focal_tversky"])
def test_losses_round_trip_through_config_and_keras_file(name: str, tmp_path) -> None:
    loss = get_seg_loss(name)
    again = type(loss).from_config(loss.get_config())
    assert again.get_config() == loss.get_config()
    inputs = keras.Input((4, 4, 1))
    model = keras.Model(inputs, keras.layers.Activation("sigmoid")(inputs))
    model.compile(optimizer="adam", loss=loss)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded.loss) is type(loss)
    assert loaded.loss.get_config() == loss.get_config()


def test_unknown_loss_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"one of \['dice', 'bce_dice', 'focal_tversky'\]"):
        get_seg_loss("lovasz")
