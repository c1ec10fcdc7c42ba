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
    image_presence_bce,
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


@pytest.mark.parametrize("name", ["dice", "bce_dice", "bce_dice_image", "focal_tversky"])
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
    with pytest.raises(ValueError, match=r"one of \['dice', 'bce_dice', 'bce_dice_image', 'focal_tversky'\]"):
        get_seg_loss("lovasz")


def test_image_term_scores_an_image_by_its_top_pixels() -> None:
    # 200 pixels, top 1% = 2 pixels. A normal image with two confident pixels costs -log(1 - 0.9);
    # a lesion image whose two best pixels are at 0.9 costs -log(0.9).
    normal = np.zeros((1, 200), np.float32)
    probs = np.full((1, 200), 0.01, np.float32)
    probs[0, :2] = 0.9
    lesion = normal.copy()
    lesion[0, 10:20] = 1.0
    got = image_presence_bce(_t(np.concatenate([normal, lesion])), _t(np.concatenate([probs, probs])), 0.01)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), [-np.log(0.1), -np.log(0.9)], rtol=1e-5)


def test_image_term_gives_a_false_lesion_on_a_normal_image_the_gradient_dice_does_not() -> None:
    normal = _t(np.zeros((1, 400)))
    logits = tf.Variable(np.where(np.arange(400) < 40, 3.0, -3.0).astype(np.float32)[None, :, None, None])
    grads = {}
    for name in ("bce_dice", "bce_dice_image"):
        with tf.GradientTape() as tape:
            loss = get_seg_loss(name)(normal, tf.sigmoid(logits))
        grads[name] = tape.gradient(loss, logits).numpy().ravel()
    dice_only = tf.GradientTape()
    with dice_only:
        loss = SoftDiceLoss()(normal, tf.sigmoid(logits))
    g_dice = dice_only.gradient(loss, logits).numpy().ravel()
    assert np.abs(g_dice[:40]).max() < 1e-3  # saturated: an empty mask's Dice barely moves a false lesion
    extra = grads["bce_dice_image"] - grads["bce_dice"]
    top = np.flatnonzero(extra > 1e-6)
    assert len(top) == 2 and (top < 40).all()  # the top 0.5% of 400 pixels, all in the false lesion
    assert extra[top].min() > 100 * np.abs(g_dice[:40]).max()  # pushed down far harder than Dice does
    np.testing.assert_allclose(np.delete(extra, top), 0.0, atol=1e-6)  # and nothing else is touched


def test_image_term_needs_a_share_of_pixels() -> None:
    with pytest.raises(ValueError, match="top_fraction"):
        BceDiceLoss(top_fraction=0.0)


def test_image_term_trains_inside_a_compiled_model_with_an_unknown_batch() -> None:
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Activation("sigmoid")(keras.layers.Conv2D(1, 1)(inputs)))
    model.compile(optimizer="adam", loss=get_seg_loss("bce_dice_image"))
    x = np.random.default_rng(0).random((4, 8, 8, 1)).astype(np.float32)
    history = model.fit(x, (x > 0.8).astype(np.float32), batch_size=2, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
