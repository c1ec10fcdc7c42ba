"""U-Net builder and the model registry."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from models.registry import build_model, get_model_entry, model_names
from models.unet import build_unet


@pytest.mark.parametrize("size,depth", [(64, 4), (96, 3), (128, 4)])
def test_output_shape_at_several_sizes(size: int, depth: int) -> None:
    model = build_unet(img_size=size, depth=depth, base_filters=4)
    x = np.random.default_rng(0).random((2, size, size, 3)).astype("float32") * 255
    y = keras.ops.convert_to_numpy(model(x, training=False))
    assert y.shape == (2, size, size, 1)
    assert y.dtype == "float32"
    assert 0.0 <= float(np.min(y)) and float(np.max(y)) <= 1.0


def test_bad_size_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"multiple of 16 .*Received: img_size=100"):
        build_unet(img_size=100, depth=4)


def test_float32_output_under_mixed_precision() -> None:
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_unet(img_size=32, depth=2, base_filters=4)
        assert model.get_layer("enc0_conv1").compute_dtype == "bfloat16"
        y = keras.ops.convert_to_numpy(model(np.zeros((1, 32, 32, 3), "float32")))
        assert y.dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_layer_names_follow_blocks() -> None:
    model = build_unet(img_size=32, depth=2, base_filters=4)
    names = {layer.name for layer in model.layers}
    assert {"enc0_conv1", "enc1_pool", "bottleneck_conv2", "dec0_up", "mask"} <= names


def test_registry_builds_by_name_and_lists_valid_names_on_error() -> None:
    assert "unet" in model_names("seg")
    assert get_model_entry("unet").task == "seg"
    assert build_model("unet", img_size=32, depth=2, base_filters=4).name == "unet"
    with pytest.raises(ValueError, match=r"must be one of \[.*'resunet', .*'unet'\]. Received: model='vnet'"):
        build_model("vnet")


def test_keras_file_round_trip(tmp_path) -> None:
    model = build_unet(img_size=32, depth=2, base_filters=4)
    x = np.random.default_rng(1).random((2, 32, 32, 3)).astype("float32") * 255
    path = tmp_path / "unet.keras"
    model.save(path)
    again = keras.models.load_model(path)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(again(x, training=False)),
        keras.ops.convert_to_numpy(model(x, training=False)),
        atol=1e-6,
    )
    clone = keras.Model.from_config(model.get_config())
    assert [w.shape for w in clone.weights] == [w.shape for w in model.weights]


@pytest.mark.parametrize("builder", ["unet", "resunet"])
def test_norm_choice_sets_the_normalization_layers(builder: str) -> None:
    inst = build_model(builder, img_size=32, depth=2, base_filters=4, dropout=0.0)  # default: instance norm
    batch = build_model(builder, img_size=32, depth=2, base_filters=4, norm="batch")
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in inst.layers)
    groups = [layer for layer in inst.layers if isinstance(layer, keras.layers.GroupNormalization)]
    assert groups and all(g.groups == g.input.shape[-1] for g in groups)  # one group per channel
    assert len([layer for layer in batch.layers if isinstance(layer, keras.layers.BatchNormalization)]) == len(groups)
    # Instance norm: an image's output does not depend on the rest of the batch, also in training mode.
    x = np.random.default_rng(3).random((3, 32, 32, 3)).astype("float32") * 255
    alone = keras.ops.convert_to_numpy(inst(x[:1], training=True))
    together = keras.ops.convert_to_numpy(inst(x, training=True))[:1]
    np.testing.assert_allclose(alone, together, atol=1e-5)
    with pytest.raises(ValueError, match="norm"):
        build_model(builder, img_size=32, depth=2, norm="layer")


@pytest.mark.parametrize("builder", ["unet", "resunet"])
def test_presence_head_adds_one_logit_per_image_to_every_pixel(builder: str, tmp_path) -> None:
    model = build_model(builder, img_size=32, depth=2, base_filters=4, presence_head=True)
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32") * 255
    y = keras.ops.convert_to_numpy(model(x, training=False))
    assert y.shape == (2, 32, 32, 1) and y.dtype == "float32"
    dense = model.get_layer("presence_logit")
    kernel, bias = dense.get_weights()
    dense.set_weights([np.zeros_like(kernel), np.array([-30.0], np.float32)])  # "no lesion" in every image
    assert float(np.max(keras.ops.convert_to_numpy(model(x)))) < 1e-6
    dense.set_weights([kernel, bias])
    path = tmp_path / "m.keras"
    model.save(path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.models.load_model(path)(x)), y, atol=1e-6)
    with pytest.raises(ValueError, match="presence_head"):
        build_model(builder, img_size=32, depth=2, base_filters=4, num_classes=2, presence_head=True)
    assert "presence_logit" not in [layer.name for layer in build_model(builder, img_size=32, depth=2).layers]
