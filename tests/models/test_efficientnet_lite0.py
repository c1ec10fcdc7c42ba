"""EfficientNet-Lite0 classifier and U-Net: ImageNet weights in place, frozen statistics, shapes, round trips."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from core.errors import OptionError
from models.classifier import BACKBONE
from models.efficientnet_lite import block_names, lite0_network
from models.gradcam import cam_model, grad_cam
from models.joint import LABEL, MASK
from models.lite_weights import imagenet_lite0
from models.options import OFFLINE_IMAGENET
from models.registry import build_model, get_model_entry, model_names

pytestmark = pytest.mark.slow


def _pixels(size: int, n: int = 2) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, (n, size, size, 3)).astype("float32")


def _encoder_weights(model: keras.Model) -> dict[str, list[np.ndarray]]:
    """Weights of the Lite0 layers inside ``model``'s nested backbone, by layer name."""
    backbone = model.get_layer(BACKBONE)
    found = {}
    for layer in backbone._flatten_layers(include_self=False):
        if layer.weights and (layer.name.startswith(("stem_", "block", "top_"))):
            found[layer.name] = [np.asarray(w) for w in layer.get_weights()]
    return found


def test_registry_serves_the_classifier_for_cls_and_the_unet_for_seg_and_joint() -> None:
    assert "efficientnet_lite0" in model_names("cls")
    assert {"efficientnet_lite0_unet"} <= set(model_names("seg")) & set(model_names("joint"))
    assert get_model_entry("efficientnet_lite0").cam_layer == BACKBONE
    assert get_model_entry("efficientnet_lite0_unet").imagenet


def test_lite0_has_sixteen_blocks_without_squeeze_excitation_and_relu6() -> None:
    network = lite0_network(64)
    assert len(block_names()) == 16 and network.output_shape == (None, 2, 2, 1280)
    assert not [layer.name for layer in network.layers if "_se_" in layer.name]
    activations = [layer for layer in network.layers if layer.name.endswith("activation")]
    assert activations and all(isinstance(a, keras.layers.ReLU) and a.max_value == 6.0 for a in activations)
    assert 3.3e6 < network.count_params() < 3.5e6  # Lite0 without its 1,000-class head: 3.4 M


def test_the_offline_imagenet_list_names_these_two_models() -> None:
    assert OFFLINE_IMAGENET == ("efficientnet_lite0", "efficientnet_lite0_unet")  # the weights test below covers each


@pytest.mark.parametrize("name", OFFLINE_IMAGENET)
def test_imagenet_puts_every_encoder_weight_of_the_converted_network_in_place(name: str) -> None:
    reference = imagenet_lite0(64)
    model = build_model(name, img_size=64, weights="imagenet")
    got = _encoder_weights(model)
    assert len(got) == len([layer for layer in reference.layers if layer.weights])
    for layer_name, values in got.items():
        for a, b in zip(values, reference.get_layer(layer_name).get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    scratch = _encoder_weights(build_model(name, img_size=64, weights="none"))
    assert not np.array_equal(scratch["stem_conv"][0], got["stem_conv"][0])


def _moving_means(model: keras.Model) -> dict[str, np.ndarray]:
    return {
        layer.name: layer.moving_mean.numpy().copy()
        for layer in model.get_layer(BACKBONE)._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.BatchNormalization)
    }


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite0_unet"])
def test_imagenet_encoder_keeps_its_batch_statistics_while_its_scales_train(name: str) -> None:
    model = build_model(name, img_size=64, weights="imagenet")
    before = _moving_means(model)
    gamma = model.get_layer(BACKBONE)._flatten_layers(include_self=False)
    gamma = {layer.name: layer.gamma.numpy().copy() for layer in gamma if hasattr(layer, "moving_mean")}
    assert len(before) == 49  # stem, 16 blocks' 2 or 3, top
    y = np.array([0, 1, 2, 0]) if name == "efficientnet_lite0" else (_pixels(64, 4)[..., :1] > 127).astype("float32")
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy" if y.ndim == 1 else "bce")
    model.fit(_pixels(64, 4), y, epochs=1, batch_size=2, verbose=0)  # the unfrozen phase: every layer trains
    after = _moving_means(model)
    for layer_name, mean in before.items():
        np.testing.assert_array_equal(after[layer_name], mean)
    trained = model.get_layer(BACKBONE)._flatten_layers(include_self=False)
    assert any(not np.array_equal(layer.gamma.numpy(), gamma[layer.name]) for layer in trained if layer.name in gamma)


@pytest.mark.parametrize("size", [32, 96])
def test_segmenter_and_joint_model_shapes(size: int) -> None:
    seg = build_model("efficientnet_lite0_unet", img_size=size, base_filters=4, presence_head=True)
    mask = keras.ops.convert_to_numpy(seg(_pixels(size)))
    assert mask.shape == (2, size, size, 1) and mask.dtype == np.float32 and ((mask >= 0) & (mask <= 1)).all()
    joint = build_model("efficientnet_lite0_unet", img_size=size, base_filters=4, joint_classes=3, consistency=0.5)
    out = joint(_pixels(size))
    assert keras.ops.convert_to_numpy(out[MASK]).shape == (2, size, size, 1)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out[LABEL]).sum(-1), 1.0, atol=1e-5)


def test_clear_errors_for_sizes_and_channels() -> None:
    with pytest.raises(OptionError, match="multiple of 32"):
        build_model("efficientnet_lite0_unet", img_size=48)
    with pytest.raises(OptionError, match="3-channel input"):
        build_model("efficientnet_lite0", img_size=64, channels=1)


def test_outputs_stay_float32_under_mixed_precision() -> None:
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        for model in (
            build_model("efficientnet_lite0", img_size=64, weights="imagenet"),
            build_model("efficientnet_lite0_unet", img_size=64, base_filters=4, joint_classes=3, weights="imagenet"),
        ):
            out = model(_pixels(64, 1))
            for value in out.values() if isinstance(out, dict) else [out]:
                array = keras.ops.convert_to_numpy(value)
                assert array.dtype == np.float32 and np.isfinite(array).all()
            assert model.get_layer(BACKBONE).compute_dtype == "bfloat16"
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("joint_classes", [None, 0, 3])
def test_keras_round_trip_gives_the_same_outputs(tmp_path, joint_classes) -> None:
    if joint_classes is None:
        model = build_model("efficientnet_lite0", img_size=64, weights="imagenet")
    else:
        model = build_model(
            "efficientnet_lite0_unet", img_size=64, base_filters=4, joint_classes=joint_classes, weights="imagenet"
        )
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = _pixels(64)
    before, after = model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    for a, b in zip(*(v.values() if isinstance(v, dict) else [v] for v in (before, after)), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # and a file of the model is a --weights starting point
    again = build_model("efficientnet_lite0", img_size=64, weights=str(path)) if joint_classes is None else None
    if again is not None:
        np.testing.assert_allclose(again.predict(x, verbose=0), before, atol=1e-6)


def test_grad_cam_explains_the_classifier_on_its_backbone() -> None:
    model = build_model("efficientnet_lite0", img_size=64, weights="imagenet")
    explainer = cam_model(model, get_model_entry("efficientnet_lite0").cam_layer)
    maps, classes, probs = grad_cam(explainer, _pixels(64))
    assert maps.shape == (2, 64, 64) and classes.shape == (2,) and np.isfinite(maps).all()
    np.testing.assert_array_equal(classes, probs.argmax(1))
