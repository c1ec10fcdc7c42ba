"""Flip test-time augmentation in evaluation (evaluation.tta)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from evaluation.tta import predict_views

RAMP = np.linspace(0.0, 1.0, 8, dtype="float32")[None, None, :, None]  # grows left to right


def _map_model() -> keras.Model:
    """A 'segmenter' whose map is the image times a left-to-right ramp: not mirror-symmetric."""
    inputs = keras.Input((4, 8, 1))
    return keras.Model(inputs, keras.layers.Lambda(lambda t: t * RAMP)(inputs))


def _side_model() -> keras.Model:
    """A 'classifier' of two classes: brightness of the left half against the right half."""
    inputs = keras.Input((4, 8, 1))
    halves = keras.layers.Lambda(
        lambda t: keras.ops.stack(
            [keras.ops.mean(t[:, :, :4], axis=(1, 2, 3)), keras.ops.mean(t[:, :, 4:], axis=(1, 2, 3))], axis=-1
        )
    )(inputs)
    return keras.Model(inputs, keras.layers.Softmax()(halves * 10.0))


def test_spatial_views_are_mirrored_back_before_averaging() -> None:
    x = np.ones((2, 4, 8, 1), "float32")
    model = _map_model()
    plain = predict_views(model, x, tta=False, spatial=True)
    both = predict_views(model, x, tta=True, spatial=True)
    np.testing.assert_allclose(plain, np.broadcast_to(RAMP, plain.shape))
    # (ramp + mirrored ramp) / 2 is flat: the mirrored view's map was put back in the image's frame.
    np.testing.assert_allclose(both, 0.5, atol=1e-6)
    # A left-right symmetric model is unchanged by it.
    sym = keras.Model(model.input, keras.layers.Lambda(lambda t: t * 2.0)(model.input))
    np.testing.assert_allclose(predict_views(sym, x, tta=True, spatial=True), 2.0)


def test_class_probabilities_are_averaged_as_they_are() -> None:
    x = np.zeros((1, 4, 8, 1), "float32")
    x[:, :, :4] = 1.0  # bright left half
    model = _side_model()
    plain = predict_views(model, x, tta=False, spatial=False)
    assert plain[0, 0] > 0.99
    both = predict_views(model, x, tta=True, spatial=False)
    np.testing.assert_allclose(both, [[0.5, 0.5]], atol=1e-6)  # the mirror's answer is the other class
    assert both.sum() == pytest.approx(1.0)
