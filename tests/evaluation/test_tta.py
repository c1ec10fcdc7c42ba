"""Flip test-time augmentation (evaluation.tta): the views, and the one rule that combines them."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from evaluation.tta import combine_views, model_views

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
    [plain] = model_views(model, x, tta=False, spatial=True)
    both = combine_views(model_views(model, x, tta=True, spatial=True), spatial=True)
    np.testing.assert_allclose(plain, np.broadcast_to(RAMP, plain.shape))
    # (ramp + mirrored ramp) / 2 is flat: the mirrored view's map was put back in the image's frame.
    np.testing.assert_allclose(both, 0.5, atol=1e-6)
    # A left-right symmetric model is unchanged by it.
    sym = keras.Model(model.input, keras.layers.Lambda(lambda t: t * 2.0)(model.input))
    np.testing.assert_allclose(combine_views(model_views(sym, x, tta=True, spatial=True), spatial=True), 2.0)


def test_class_probabilities_are_averaged_as_they_are() -> None:
    x = np.zeros((1, 4, 8, 1), "float32")
    x[:, :, :4] = 1.0  # bright left half
    model = _side_model()
    [plain] = model_views(model, x, tta=False, spatial=False)
    assert plain[0, 0] > 0.99
    both = combine_views(model_views(model, x, tta=True, spatial=False), spatial=False)
    np.testing.assert_allclose(both, [[0.5, 0.5]], atol=1e-6)  # the mirror's answer is the other class
    assert both.sum() == pytest.approx(1.0)


def test_a_map_is_kept_only_if_every_view_keeps_a_lesion() -> None:
    a = np.zeros((3, 2, 2, 1))
    b = np.zeros((3, 2, 2, 1))
    a[0], b[0] = 0.8, 0.6  # both views keep image 0's lesion: the mean
    a[1] = 0.9  # the mirrored view of image 1 was gated to "no lesion": no lesion
    combined = combine_views([a, b], spatial=True)
    np.testing.assert_allclose(combined[0], 0.7)
    assert not combined[1].any() and not combined[2].any()
    assert combine_views([a], spatial=True) is not None and np.array_equal(combine_views([a], spatial=True), a)


def test_evaluation_calibrates_each_view_before_combining_them_as_predict_does(make_busi, tmp_path) -> None:
    import json

    from config.train import TrainConfig
    from data.discover import discover
    from evaluation.base import EvalRequest
    from evaluation.cls import evaluate_cls, read_predictions
    from evaluation.run_files import TEMPERATURE_FILE
    from metrics.calibration import apply_temperature

    records = list(discover(make_busi(per_class=2)).values())
    (tmp_path / TEMPERATURE_FILE).write_text(json.dumps({"temperature": 3.0, "halves": []}))
    inputs = keras.Input((16, 16, 3))
    sides = keras.layers.Lambda(
        lambda t: keras.ops.stack(
            [
                keras.ops.mean(t[:, :, :5], axis=(1, 2, 3)),
                keras.ops.mean(t[:, :, 5:], axis=(1, 2, 3)),
                keras.ops.mean(t[:, :, 2:14], axis=(1, 2, 3)),
            ],
            axis=-1,
        )  # fmt: skip
    )(inputs)
    model = keras.Model(inputs, keras.layers.Softmax()(sides / 8.0))
    cfg = TrainConfig(task="cls", img_size=16, batch_size=4)
    evaluate_cls(model, cfg, EvalRequest(records, tmp_path / "out", fold_dir=tmp_path, own_data=False, tta=True))
    _, _, written = read_predictions(tmp_path / "out" / "predictions.csv")
    from evaluation.cls import predict_cls

    _, _, views = predict_cls(model, records, cfg, tta=True)
    expected = combine_views([apply_temperature(v, 3.0) for v in views], spatial=False)
    assert np.abs(views[0] - views[1]).max() > 1e-2  # the views differ, so the order of the two steps matters
    np.testing.assert_allclose(written, expected, atol=2e-6)
    calibrated_mean = apply_temperature(combine_views(views, spatial=False), 3.0)
    assert np.abs(calibrated_mean - expected).max() > 1e-4
