"""The keras-hub transformers: SegFormer, MiT-B0 and DeiT-Tiny behind the registry, presets as weights."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from config.train import HUB_CLASSIFIERS, TrainConfig
from evaluation.run_files import load_run_model
from models.hub import PatchGrid, _resize_positions, keras_hub, uses_keras_hub
from models.joint import LABEL, MASK
from models.registry import build_model, get_model_entry, model_names
from training.cls import build_cls_model
from training.joint import build_joint_model
from training.seg import build_seg_model

pytestmark = pytest.mark.slow

HUB = ["deit_tiny", "mit_b0_cls", "segformer_b0", "segformer_b1"]


def _pixels(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def _out(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def test_registry_marks_the_keras_hub_models() -> None:
    assert [n for n in model_names() if get_model_entry(n).hub] == HUB
    assert {"deit_tiny", "mit_b0_cls"} <= set(model_names("cls"))
    assert {"segformer_b0", "segformer_b1"} <= set(model_names("seg")) & set(model_names("joint"))
    assert HUB_CLASSIFIERS == tuple(n for n in model_names("cls") if get_model_entry(n).hub)  # their default lr


@pytest.mark.parametrize(("name", "size"), [("segformer_b0", 64), ("segformer_b0", 96), ("segformer_b1", 64)])
def test_segformer_gives_one_float32_lesion_channel_at_the_input_size(name: str, size: int) -> None:
    model = build_model(name, img_size=size)
    p = _out(model, _pixels(2, size))
    assert model.input_shape == (None, size, size, 3) and p.shape == (2, size, size, 1)
    assert p.dtype == np.float32 and ((p >= 0) & (p <= 1)).all()
    deepest = model.get_layer("backbone").pyramid.outputs[-1].shape
    assert deepest == (None, size // 32, size // 32, 256 if "b0" in name else 512)


@pytest.mark.parametrize(
    ("name", "size"), [("mit_b0_cls", 64), ("mit_b0_cls", 96), ("deit_tiny", 32), ("deit_tiny", 64)]
)
def test_transformer_classifiers_give_three_float32_probabilities(name: str, size: int) -> None:
    model = build_model(name, img_size=size)
    p = _out(model, _pixels(2, size))
    assert p.shape == (2, 3) and p.dtype == np.float32 and np.allclose(p.sum(-1), 1, atol=1e-5)
    grid = model.get_layer(get_model_entry(name).cam_layer).output.shape  # the map Grad-CAM weighs
    assert grid[1:3] == ((size // 32,) * 2 if name == "mit_b0_cls" else (size // 16,) * 2)


def test_outputs_stay_float32_under_mixed_precision() -> None:
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        seg = build_model("segformer_b0", img_size=64)
        cls = build_model("deit_tiny", img_size=32)
        assert seg.get_layer("head_conv").compute_dtype == "float16"
        assert cls.get_layer("logits").compute_dtype == "float16"
        for model in (seg, cls):
            size = model.input_shape[1]
            out = model(np.zeros((1, size, size, 3), "float32"), training=False)
            assert keras.backend.standardize_dtype(out.dtype) == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize(
    ("name", "size", "step"),
    [("segformer_b0", 80, 32), ("segformer_b0", 32, 32), ("mit_b0_cls", 100, 32), ("deit_tiny", 40, 16)],
)
def test_unsupported_size_is_a_clear_error(name: str, size: int, step: int) -> None:
    with pytest.raises(ValueError, match=f"`img_size` must be a multiple of {step} for {name}"):
        build_model(name, img_size=size)


def test_bad_weights_are_clear_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="takes a keras-hub preset name"):
        build_model("segformer_b0", img_size=32, weights="imagenet")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        build_model("deit_tiny", img_size=32, weights=str(tmp_path / "no_such_preset"))
    with pytest.raises(FileNotFoundError, match="not found"):
        build_model("mit_b0_cls", img_size=32, weights=str(tmp_path / "missing.weights.h5"))


def test_unet_options_on_a_transformer_are_an_error_not_ignored() -> None:
    with pytest.raises(ValueError, match="--depth --norm set the U-Net's layers; --model segformer_b0"):
        build_seg_model(TrainConfig(model="segformer_b0", img_size=64, depth=3, norm="batch"))
    model = build_joint_model(TrainConfig(task="joint", model="segformer_b0", img_size=64, consistency=0.5))
    out = model(_pixels(2, 64), training=False)
    assert out[MASK].shape == (2, 64, 64, 1) and out[LABEL].shape == (2, 3)
    assert model.get_layer("lesion_agreement").weight == 0.5


def test_architecture_options_reach_the_models_that_have_them_and_are_errors_elsewhere(tmp_path) -> None:
    deit = build_cls_model(TrainConfig(task="cls", model="deit_tiny", img_size=64, patch_size=32, num_layers=2))
    assert deit.get_layer("backbone").get_layer("deit").get_config()["num_layers"] == 2
    assert deit.get_layer("backbone").output.shape[1:3] == (2, 2)  # 64 / 32 patches a side
    assert _out(deit, _pixels(1, 64)).shape == (1, 3)
    mit = build_cls_model(TrainConfig(task="cls", model="mit_b0_cls", img_size=64, drop_path=0.3))
    assert mit.get_layer("backbone").get_config()["max_drop_path_rate"] == 0.3
    seg = build_seg_model(TrainConfig(model="segformer_b0", img_size=64, drop_path=0.0))
    assert seg.get_layer("backbone").get_config()["encoder"]["config"]["max_drop_path_rate"] == 0.0
    # The options live in the saved model: a run reloads what it trained.
    deit.save(tmp_path / "deit.keras")
    again = load_run_model(tmp_path / "deit.keras", compile=False)
    assert again.get_layer("backbone").get_layer("deit").get_config()["num_layers"] == 2
    with pytest.raises(ValueError, match=r"`--patch-size` is an option of \['deit_tiny'\]; --model efficientnet_b0"):
        build_cls_model(TrainConfig(task="cls", model="efficientnet_b0", patch_size=8))
    with pytest.raises(ValueError, match=r"`--drop-path` is an option of \['mit_b0_cls', 'segformer_b0', 'segf"):
        build_seg_model(TrainConfig(model="unet", drop_path=0.1))
    with pytest.raises(ValueError, match="`--num-layers` is an option of .*; --model unet does not have it"):
        build_joint_model(TrainConfig(task="joint", model="unet", num_layers=4))
    with pytest.raises(ValueError, match=r"`drop_path` of mit_b0_cls must be in \[0, 1\)"):
        build_model("mit_b0_cls", img_size=64, drop_path=1.0)
    with pytest.raises(ValueError, match="`img_size` must be a multiple of 32 for deit_tiny"):
        build_model("deit_tiny", img_size=48, patch_size=32)


def test_a_preset_of_another_depth_is_a_clear_error(tmp_path) -> None:
    from models.deit_tiny import DEIT_TINY

    keras_hub().models.DeiTBackbone(image_shape=(32, 32, 3), patch_size=16, **DEIT_TINY).save_to_preset(
        str(tmp_path / "deit")
    )
    with pytest.raises(
        ValueError,
        match="is a DeiTBackbone with 199 weights .* needs a DeiTBackbone with 103 .* pick a preset of the same",
    ):
        build_model("deit_tiny", img_size=32, num_layers=6, weights=str(tmp_path / "deit"))


def test_patch_grid_drops_the_leading_tokens_in_order() -> None:
    tokens = np.arange(2 * 6 * 3, dtype="float32").reshape(2, 6, 3)  # 2 extra tokens + a 2x2 grid
    grid = keras.ops.convert_to_numpy(PatchGrid(2)(tokens))
    np.testing.assert_array_equal(grid, tokens[:, 2:].reshape(2, 2, 2, 3))
    with pytest.raises(ValueError, match="not a square grid"):
        PatchGrid(1)(tokens)


def test_position_embeddings_resize_over_the_grid_and_keep_the_extra_tokens() -> None:
    rng = np.random.default_rng(0)
    grid = np.repeat(np.repeat(rng.normal(size=(1, 2, 2, 4)), 2, axis=1), 2, axis=2)  # smooth at 4x4
    source = np.concatenate([rng.normal(size=(1, 2, 4)), grid.reshape(1, 16, 4)], axis=1)
    resized = _resize_positions(source, (1, 2 + 4, 4))
    np.testing.assert_allclose(resized[:, :2], source[:, :2])
    np.testing.assert_allclose(resized[:, 2:].reshape(1, 2, 2, 4), grid[:, ::2, ::2], atol=1e-5)


def test_keras_file_round_trip_keeps_both_heads(tmp_path) -> None:
    """The SavedModel round trip is in tests/training/test_hub_runs.py, on what the runs export."""
    x = _pixels(2, 64, seed=3)
    model = build_model("segformer_b0", img_size=64, joint_classes=3, consistency=0.5)
    want = {k: keras.ops.convert_to_numpy(v) for k, v in model(x, training=False).items()}
    model.save(tmp_path / "joint.keras")
    assert uses_keras_hub(tmp_path / "joint.keras") and not uses_keras_hub(tmp_path / "none.keras")
    again = load_run_model(tmp_path / "joint.keras")
    for k, v in again(x, training=False).items():
        np.testing.assert_allclose(keras.ops.convert_to_numpy(v), want[k], atol=1e-6)
    assert again.get_layer("lesion_agreement").weight == 0.5


def _weights_equal(a: keras.Model, b: keras.Model) -> bool:
    return all(
        np.array_equal(keras.ops.convert_to_numpy(u), keras.ops.convert_to_numpy(v))
        for u, v in zip(a.weights, b.weights, strict=True)
    )


def test_preset_directories_fill_the_encoder_and_the_decoder(tmp_path) -> None:
    """Presets the test writes itself (``save_to_preset``), at another input size than the models'."""
    from models.hub import MIT_STAGES, MIT_VARIANTS

    hub = keras_hub()
    mit = hub.models.MiTBackbone(**MIT_VARIANTS["b0"], **MIT_STAGES, max_drop_path_rate=0.1, image_shape=(96, 96, 3))
    segformer = hub.models.SegFormerBackbone(image_encoder=mit, projection_filters=256)
    for w in segformer.weights:  # weights of its own, not initial values a fresh model could share
        w.assign(np.random.default_rng(1).normal(size=w.shape).astype(w.dtype))
    segformer.save_to_preset(str(tmp_path / "segformer"))
    mit.save_to_preset(str(tmp_path / "mit"))

    from_mit = build_model("mit_b0_cls", img_size=64, weights=str(tmp_path / "mit"))
    assert _weights_equal(from_mit.get_layer("backbone"), mit)
    full = build_model("segformer_b0", img_size=64, weights=str(tmp_path / "segformer"))
    assert _weights_equal(full.get_layer("backbone"), mit)
    fuse = segformer.linear_fuse.layers[0].kernel
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(full.get_layer("decoder_fuse").kernel), fuse)
    for i, dense in enumerate(segformer.mlp_blocks):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(full.get_layer(f"decoder_linear_{i}").kernel), dense.kernel
        )


def test_deit_preset_at_another_size_gets_resized_position_embeddings(tmp_path) -> None:
    from models.deit_tiny import DEIT_TINY

    hub = keras_hub()
    deit = hub.models.DeiTBackbone(image_shape=(64, 64, 3), patch_size=16, **DEIT_TINY)
    deit.save_to_preset(str(tmp_path / "deit"))
    model = build_model("deit_tiny", img_size=32, weights=str(tmp_path / "deit"))
    mine = {w.path.split("/", 1)[-1]: keras.ops.convert_to_numpy(w) for w in model.get_layer("backbone").weights}
    theirs = {w.path.split("/", 1)[-1]: keras.ops.convert_to_numpy(w) for w in deit.weights}
    assert mine.keys() == theirs.keys()
    (pos,) = [k for k in mine if k.endswith("position_embedding")]
    assert theirs[pos].shape == (1, 2 + 16, 192) and mine[pos].shape == (1, 2 + 4, 192)
    assert all(np.array_equal(mine[k], theirs[k]) for k in mine if k != pos)
    with pytest.raises(ValueError, match="is a DeiTBackbone .* pick a preset of the same architecture"):
        build_model("mit_b0_cls", img_size=64, weights=str(tmp_path / "deit"))
