"""The four classifiers: shapes, float32 outputs, SE placement, weight mapping by name."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from models.classifier import CaffePreprocess, FrozenBatchNormalization, assemble, transfer_by_name
from models.registry import build_model, model_names
from models.resnet50_se import se_resnet50_backbone

CLASSIFIERS = ["convnext_tiny", "efficientnet_b0", "resnet50", "resnet50_se"]


def test_registry_lists_the_classifiers_for_cls() -> None:
    # and tests/models/test_hub.py, tests/models/test_efficientnet_lite0.py
    assert model_names("cls") == sorted([*CLASSIFIERS, "deit_tiny", "efficientnet_lite0", "mit_b0_cls"])
    assert not set(CLASSIFIERS) & set(model_names("seg"))


@pytest.mark.slow
@pytest.mark.parametrize("name", CLASSIFIERS)
@pytest.mark.parametrize("size", [64, 224])
def test_builds_with_three_float32_softmax_outputs(name: str, size: int) -> None:
    model = build_model(name, img_size=size)
    assert model.input_shape == (None, size, size, 3) and model.output_shape == (None, 3)
    assert model.get_layer("backbone") is not None
    if size == 64:  # a forward pass on raw pixels gives probabilities
        x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
        p = keras.ops.convert_to_numpy(model(x, training=False))
        assert p.dtype == np.float32 and np.allclose(p.sum(-1), 1, atol=1e-5)


def test_mixed_precision_outputs_stay_float32() -> None:
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_model("efficientnet_b0", img_size=64)
        assert model.get_layer("logits").compute_dtype == "bfloat16"
        out = model(np.zeros((1, 64, 64, 3), "float32"), training=False)
        assert keras.backend.standardize_dtype(out.dtype) == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_resnet50_se_has_16_se_blocks_before_the_additions() -> None:
    se = se_resnet50_backbone(64)
    excite = [layer for layer in se.layers if layer.name.endswith("_se_excite")]
    adds = [layer for layer in se.layers if isinstance(layer, keras.layers.Add)]
    assert len(excite) == 16 and len(adds) == 16
    for add in adds:  # each addition takes the shortcut and an SE-rescaled residual branch
        inbound = [t._keras_history.operation.name for t in add._inbound_nodes[0].input_tensors]
        block = add.name.removesuffix("_add")
        assert f"{block}_se_excite" in inbound, (add.name, inbound)
    for layer in excite:  # the SE block gates the branch's last batch norm
        inbound = [t._keras_history.operation.name for t in layer._inbound_nodes[0].input_tensors]
        assert inbound[0] == layer.name.replace("_se_excite", "_3_bn")


def test_resnet50_se_shares_every_other_layer_name_with_resnet50() -> None:
    ref = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(64, 64, 3))
    se = se_resnet50_backbone(64)
    ref_names = {layer.name for layer in ref.layers if not isinstance(layer, keras.layers.InputLayer)}
    se_names = {layer.name for layer in se.layers if not isinstance(layer, keras.layers.InputLayer)}
    assert ref_names <= se_names
    assert all("_se_" in n for n in se_names - ref_names) and len(se_names - ref_names) == 16 * 4


def test_imagenet_style_weights_map_by_name_and_se_starts_fresh() -> None:
    # keras.applications' ResNet-50 stands in for the ImageNet download: the mapping is by name.
    ref = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(64, 64, 3))
    se = se_resnet50_backbone(64)
    fresh = transfer_by_name(ref, se)
    assert sorted(fresh) == sorted(
        layer.name for layer in se.layers if "_se_" in layer.name and layer.weights
    )  # only SE convs lack a source
    for name in ("conv1_conv", "conv3_block2_2_conv", "conv5_block3_3_bn"):
        for a, b in zip(se.get_layer(name).get_weights(), ref.get_layer(name).get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(1).normal(size=(1, 64, 64, 3)).astype("float32")
    assert np.isfinite(keras.ops.convert_to_numpy(se(x))).all()


def test_caffe_preprocess_flips_to_bgr_and_subtracts_the_means() -> None:
    x = np.array([[[[10.0, 20.0, 30.0]]]], dtype="float32")
    out = keras.ops.convert_to_numpy(CaffePreprocess()(x))
    np.testing.assert_allclose(out[0, 0, 0], [30 - 103.939, 20 - 116.779, 10 - 123.68], rtol=1e-6)


def test_weights_file_round_trip_and_bad_weights_are_clear(tmp_path) -> None:
    a = build_model("efficientnet_b0", img_size=32)
    path = tmp_path / "a.weights.h5"
    a.save_weights(path)
    b = build_model("efficientnet_b0", img_size=32, weights=str(path))
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        build_model("resnet50", img_size=32, weights=str(tmp_path / "missing.keras"))
    with pytest.raises(ValueError, match="none, imagenet"):
        build_model("resnet50", img_size=32, weights="imagenet21k")
    with pytest.raises(ValueError, match="3-channel"):
        build_model("resnet50", img_size=32, channels=1)


def test_keras_round_trip_keeps_predictions(tmp_path) -> None:
    model = build_model("resnet50_se", img_size=32)
    path = tmp_path / "m.keras"
    model.save(path)
    back = keras.models.load_model(path)
    x = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(back(x, training=False)),
        keras.ops.convert_to_numpy(model(x, training=False)),
        atol=1e-6,
    )


def test_a_pretrained_backbone_keeps_its_batch_statistics_under_fit_and_a_round_trip(tmp_path) -> None:
    # Keras 3 replays a nested backbone with the outer call's `training`: frozen_bn must not rely on training=False.
    source = keras.applications.EfficientNetB0(
        include_top=False, weights=None, input_shape=(32, 32, 3), name="backbone"
    )
    model = assemble(source, 32, 3, 0.0, "b0", frozen_bn=True)
    bn = model.get_layer("backbone").get_layer("stem_bn")
    assert isinstance(bn, FrozenBatchNormalization)
    np.testing.assert_array_equal(bn.moving_variance.numpy(), source.get_layer("stem_bn").moving_variance.numpy())
    before = bn.moving_mean.numpy().copy()
    x = np.random.default_rng(2).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.fit(x, np.array([0, 1, 2, 0]), epochs=1, batch_size=2, verbose=0)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), before)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.get_layer("backbone").get_layer("stem_bn"), FrozenBatchNormalization)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    scratch = assemble(keras.applications.EfficientNetB0(include_top=False, weights=None, input_shape=(32, 32, 3),
                                                          name="backbone"), 32, 3, 0.0, "b0")  # fmt: skip
    assert type(scratch.get_layer("backbone").get_layer("stem_bn")) is keras.layers.BatchNormalization
