"""Joint models (mask + class from one encoder): outputs, the agreement penalty, save/load and serving."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from evaluation.run_files import load_run_model
from models.classifier import LOGITS
from models.joint import DEEP_FEATURES, LABEL, MASK, LesionAgreement, mask_presence
from models.registry import build_model, get_model_entry, model_names

SMALL = {
    "unet": dict(img_size=32, base_filters=4, depth=2, joint_classes=3),
    "resunet": dict(img_size=32, base_filters=4, depth=2, joint_classes=3),
    "efficientnet_b0_unet": dict(img_size=32, base_filters=2),
}


def test_registry_lists_joint_models_and_their_grad_cam_layer() -> None:
    assert model_names("joint") == [
        "efficientnet_b0_unet", "efficientnet_lite0_unet", "resunet", "segformer_b0", "segformer_b1", "unet"
    ]  # fmt: skip
    assert "efficientnet_b0_unet" not in model_names("seg") + model_names("cls")
    assert get_model_entry("unet").cam_layer_for("joint") == DEEP_FEATURES
    assert get_model_entry("unet").cam_layer_for("seg") is None


@pytest.mark.parametrize(
    ("name", "size"), [("unet", 32), ("resunet", 32), ("efficientnet_b0_unet", 32), ("efficientnet_b0_unet", 64)]
)
def test_joint_outputs_shapes_and_dtypes(name: str, size: int) -> None:
    model = build_model(name, **{**SMALL[name], "img_size": size})
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    out = model(x)
    assert set(out) == {MASK, LABEL}
    mask, probs = (keras.ops.convert_to_numpy(out[k]) for k in (MASK, LABEL))
    assert mask.shape == (2, size, size, 1) and probs.shape == (2, 3)
    assert mask.dtype == np.float32 and probs.dtype == np.float32
    assert ((mask >= 0) & (mask <= 1)).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert {DEEP_FEATURES, LOGITS} <= {layer.name for layer in model.layers}


def test_joint_outputs_stay_float32_under_mixed_precision() -> None:
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_model("unet", **SMALL["unet"], consistency=1.0)
        out = model(np.zeros((1, 32, 32, 3), "float32"))
        assert model.get_layer("enc0_conv1").compute_dtype == "bfloat16"
        assert all(keras.ops.convert_to_numpy(v).dtype == np.float32 for v in out.values())
        assert all(np.isfinite(keras.ops.convert_to_numpy(loss)) for loss in model.losses)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_encoder_decoder_rejects_a_size_it_cannot_halve_five_times() -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        build_model("efficientnet_b0_unet", img_size=48)


def test_agreement_penalty_is_the_weighted_squared_disagreement() -> None:
    mask = np.zeros((2, 20, 20, 1), "float32")
    mask[0] = 1.0  # image 0: a lesion everywhere (presence 1); image 1: none (presence 0)
    probs = np.array([[1.0, 0.0, 0.0], [0.0, 0.2, 0.8]], "float32")  # both called the opposite way
    np.testing.assert_allclose(keras.ops.convert_to_numpy(mask_presence(mask)), [1.0, 0.0])
    layer = LesionAgreement(2.0)
    out = layer([mask, probs])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(out), probs)  # identity on the probabilities
    assert len(layer.losses) == 1
    assert float(layer.losses[0]) == pytest.approx(2.0 * (1.0 + 1.0) / 2)
    agreeing = LesionAgreement(2.0)
    agreeing([mask, probs[::-1].copy()])
    assert float(agreeing.losses[0]) == pytest.approx(0.0)
    off = LesionAgreement(0.0)
    off([mask, probs])
    assert off.losses == []
    with pytest.raises(ValueError, match="consistency"):
        LesionAgreement(-1.0)


def test_agreement_penalty_is_part_of_the_training_loss() -> None:
    model = build_model("unet", **SMALL["unet"], consistency=3.0)
    model.compile(
        optimizer="sgd",
        loss={MASK: "binary_crossentropy", LABEL: "categorical_crossentropy"},
        loss_weights={MASK: 1.0, LABEL: 0.5},
    )
    x = np.random.default_rng(1).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    y = {MASK: np.zeros((4, 32, 32, 1), "float32"), LABEL: np.eye(3, dtype="float32")[[0, 1, 2, 0]]}
    logs = model.evaluate(x, y, return_dict=True, verbose=0, batch_size=4)
    out = model(x)
    penalty = 3.0 * np.mean(
        (1 - keras.ops.convert_to_numpy(out[LABEL])[:, 0] - keras.ops.convert_to_numpy(mask_presence(out[MASK]))) ** 2
    )
    assert penalty > 1e-4
    assert logs["loss"] == pytest.approx(logs["mask_loss"] + 0.5 * logs["label_loss"] + penalty, rel=1e-4)


def test_keras_file_and_saved_model_round_trip_with_both_heads(tmp_path) -> None:
    from serving.export import read_export_info, write_servable
    from serving.signatures import BYTES_INPUT, BYTES_SIGNATURE, PIXELS_INPUT, PIXELS_SIGNATURE, ServingSpec

    model = build_model("unet", **SMALL["unet"], consistency=0.5)
    x = np.random.default_rng(2).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    want = {k: keras.ops.convert_to_numpy(v) for k, v in model(x).items()}
    model.save(tmp_path / "joint.keras")
    again = load_run_model(tmp_path / "joint.keras")
    for k, v in again(x).items():
        np.testing.assert_allclose(keras.ops.convert_to_numpy(v), want[k], atol=1e-6)
    assert again.get_layer("lesion_agreement").weight == 0.5

    version = write_servable(model, ServingSpec(task="joint", img_size=32, channels=3), tmp_path / "1", "joint")
    assert read_export_info(version)["task"] == "joint"
    loaded = tf.saved_model.load(str(version))
    out = loaded.signatures[PIXELS_SIGNATURE](**{PIXELS_INPUT: tf.constant(x)})
    np.testing.assert_allclose(out["probabilities"].numpy(), want[LABEL], atol=1e-5)
    np.testing.assert_allclose(out["mask_probability"].numpy(), want[MASK][..., 0], atol=1e-5)
    np.testing.assert_array_equal(out["class_id"].numpy(), want[LABEL].argmax(axis=1))
    np.testing.assert_allclose(out["lesion_area_fraction"].numpy(), (want[MASK] >= 0.5).mean(axis=(1, 2, 3)))
    png = tf.io.encode_png(np.full((40, 50, 1), 90, np.uint8)).numpy()
    served = loaded.signatures[BYTES_SIGNATURE](**{BYTES_INPUT: tf.constant([png, png])})
    assert {"probabilities", "class_name", "mask_probability", "original_height"} <= set(served)
    assert served["original_width"].numpy().tolist() == [50, 50]
    assert json.loads((version / "assets.extra" / "export.json").read_text())["signatures"]
