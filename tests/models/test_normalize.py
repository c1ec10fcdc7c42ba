"""Per-image input standardization (models.normalize) in the segmenters and classifiers."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from models.normalize import PIXEL_MEAN, PIXEL_STD, ImageStandardization
from models.registry import build_model


def _images(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(20, 200, (2, 32, 32, 3)).astype("float32")


def test_each_image_gets_its_own_mean_and_deviation() -> None:
    x = _images()
    x[1] = x[1] * 0.3 + 90  # a darker, flatter second image
    z = keras.ops.convert_to_numpy(ImageStandardization(scale=PIXEL_STD, offset=PIXEL_MEAN)(x))
    np.testing.assert_allclose(z.reshape(2, -1).mean(axis=1), PIXEL_MEAN, atol=1e-3)
    np.testing.assert_allclose(z.reshape(2, -1).std(axis=1), PIXEL_STD, rtol=1e-4)


def test_a_flat_image_maps_to_the_offset_without_nan() -> None:
    z = keras.ops.convert_to_numpy(ImageStandardization(offset=3.0)(np.full((1, 8, 8, 3), 77.0, "float32")))
    np.testing.assert_allclose(z, 3.0)


def test_config_round_trip() -> None:
    layer = ImageStandardization(scale=2.0, offset=5.0, epsilon=0.5, name="s")
    again = ImageStandardization.from_config(layer.get_config())
    assert (again.scale, again.offset, again.epsilon, again.name) == (2.0, 5.0, 0.5, "s")


@pytest.mark.parametrize("builder", ["unet", "resunet"])
def test_segmenter_ignores_gain_and_brightness_with_image_norm(builder: str, tmp_path) -> None:
    x = _images()
    fixed = build_model(builder, img_size=32, depth=2, base_filters=4)
    image = build_model(builder, img_size=32, depth=2, base_filters=4, input_norm="image")
    assert "rescale" in [la.name for la in fixed.layers]
    assert "image_standardization" in [la.name for la in image.layers]
    image.set_weights(fixed.get_weights())  # the same convolutions; only the input scaling differs
    brighter = x * 1.1 + 20  # still within [0, 255]
    # A scanner's gain and brightness change what the fixed model sees, not what the standardized one sees.
    assert np.abs(keras.ops.convert_to_numpy(fixed(brighter) - fixed(x))).max() > 1e-3
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(image(brighter)), keras.ops.convert_to_numpy(image(x)), atol=1e-5
    )
    path = tmp_path / "m.keras"
    image.save(path)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(keras.models.load_model(path)(x)), keras.ops.convert_to_numpy(image(x)), atol=1e-6
    )


def test_classifier_standardizes_before_its_imagenet_normalization() -> None:
    x = _images()
    model = build_model("efficientnet_b0", img_size=32, input_norm="image")
    names = [la.name for la in model.layers]
    assert names.index("image_standardization") < names.index("backbone")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(x * 0.5 + 40)), keras.ops.convert_to_numpy(model(x)), atol=1e-5
    )


def test_unknown_input_norm_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="input_norm"):
        build_model("unet", img_size=32, depth=2, input_norm="zscore")
    from config.train import TrainConfig

    with pytest.raises(ValueError, match="input_norm"):
        TrainConfig(input_norm="zscore")
