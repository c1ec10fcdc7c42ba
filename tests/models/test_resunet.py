"""ResUNet builder."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from models.registry import build_model, model_names
from models.resunet import build_resunet


@pytest.mark.parametrize("size,depth", [(64, 4), (96, 3), (128, 4)])
def test_output_shape_at_several_sizes(size: int, depth: int) -> None:
    model = build_resunet(img_size=size, depth=depth, base_filters=4)
    x = np.random.default_rng(0).random((2, size, size, 3)).astype("float32") * 255
    y = keras.ops.convert_to_numpy(model(x, training=False))
    assert y.shape == (2, size, size, 1) and y.dtype == np.float32
    assert 0.0 <= y.min() and y.max() <= 1.0


def test_bad_size_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"multiple of 8 .*Received: img_size=60"):
        build_resunet(img_size=60, depth=3)


def test_has_residual_additions_in_every_unit() -> None:
    model = build_resunet(img_size=32, depth=2, base_filters=4)
    adds = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Add)]
    assert adds == ["enc0_add", "enc1_add", "enc2_add", "dec1_add", "dec0_add"]


def test_registered_and_round_trips(tmp_path) -> None:
    assert model_names("seg") == ["efficientnet_lite0_unet", "resunet", "segformer_b0", "segformer_b1", "unet"]
    model = build_model("resunet", img_size=32, depth=2, base_filters=4)
    x = np.random.default_rng(1).random((2, 32, 32, 3)).astype("float32") * 255
    model.save(tmp_path / "r.keras")
    again = keras.models.load_model(tmp_path / "r.keras")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(again(x, training=False)),
        keras.ops.convert_to_numpy(model(x, training=False)),
        atol=1e-6,
    )
    clone = keras.Model.from_config(model.get_config())
    assert [w.shape for w in clone.weights] == [w.shape for w in model.weights]


def test_float32_output_under_mixed_precision() -> None:
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_resunet(img_size=32, depth=2, base_filters=4)
        y = model(np.zeros((1, 32, 32, 3), "float32"))
        assert keras.ops.convert_to_numpy(y).dtype == np.float32
    finally:
        keras.mixed_precision.set_global_policy("float32")
