"""EfficientNet-Lite0 from ImageNet through every path: train (fold all, two replicas, external), resume, evaluate,
export and predict, for the classifier, the segmenter and the joint model. No download: the weights come with pip.
The classifier is the default one too: ``trained_runs`` (conftest) takes it through predict, export, the report."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import evaluate
import export
import predict
import train
from core.errors import OptionError
from data.synthetic import SynthConfig, generate_synthetic
from models.classifier import BACKBONE
from models.lite_weights import imagenet_lite0

# Three groups, so pytest-xdist's two workers share the runs; the segmentation run's users stay on one worker.
pytestmark = pytest.mark.slow
SEG_GROUP = pytest.mark.xdist_group("lite0_seg")
SMALL = dict(img_size=32, batch_size=2, max_samples=8, augment="none", weights="imagenet", folds=2)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lite0")
    return {
        "own": generate_synthetic(root / "own", SynthConfig(per_class=6, size=64, seed=3)),
        "other": generate_synthetic(root / "other", SynthConfig(per_class=3, size=64, seed=4)),
        "runs": root / "runs",
    }


@pytest.fixture(scope="module")
def seg_run(data) -> Path:
    """Two epochs (frozen encoder, then all layers) on two replicas, scored on another dataset too."""
    result = train.run(
        task="seg", model="efficientnet_lite0_unet", data_dir=str(data["own"]), project=str(data["runs"]), epochs=2,
        freeze_epochs=1, base_filters=4, external=[str(data["other"])], devices=["/cpu:0", "/cpu:1"], export=False,
        **SMALL,
    )  # fmt: skip
    return Path(result["run_dir"])


def _history(run: Path) -> list[dict]:
    with open(run / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


@SEG_GROUP
def test_segmenter_trains_frozen_then_whole_and_keeps_imagenet_statistics(seg_run: Path, data) -> None:
    config = json.loads((seg_run / "config.json").read_text())
    assert config["model"] == "efficientnet_lite0_unet" and config["weights"] == "imagenet"
    assert [int(float(r["epoch"])) for r in _history(seg_run)] == [1, 2]
    model = keras.saving.load_model(seg_run / "weights" / "last.keras", compile=False)
    encoder = model.get_layer(BACKBONE)
    reference = imagenet_lite0(32)
    for name in ("stem_bn", "block4a_expand_bn", "top_bn"):  # statistics kept, whatever the batches were
        np.testing.assert_array_equal(
            encoder.get_layer(name).moving_variance.numpy(), reference.get_layer(name).moving_variance.numpy()
        )
    assert not np.array_equal(  # while the second phase trained the encoder's convolutions
        encoder.get_layer("block4a_expand_conv").kernel.numpy(), reference.get_layer("block4a_expand_conv").kernel
    )
    metrics = json.loads((seg_run / "metrics.json").read_text())
    assert 0 <= metrics["dice"] <= 1 and "lesion_gate" in metrics
    assert json.loads((seg_run / "external" / "other" / "metrics.json").read_text())["n_images"] > 0


@SEG_GROUP
def test_segmenter_evaluates_with_tta_and_postprocessing(seg_run: Path) -> None:
    (res,) = evaluate.main(evaluate.parse_args(["--run", str(seg_run), "--tta", "--postprocess", "largest"])).values()
    assert res["tta"] is True and res["postprocess"] == "largest" and 0 <= res["dice"] <= 1


@SEG_GROUP
def test_segmenter_exports_a_saved_model_that_serves_a_png(seg_run: Path, tmp_path: Path) -> None:
    result = export.run(str(seg_run), out=str(tmp_path / "export"))
    served = tf.saved_model.load(str(result.path))
    png = tf.io.encode_png(np.full((40, 50, 1), 90, np.uint8)).numpy()
    out = served.signatures["serving_default"](images=tf.constant([png]))
    assert out["mask_probability"].shape == (1, 32, 32)


@pytest.mark.xdist_group("lite0_cls")
def test_classifier_fold_all_evaluates_another_dataset(data) -> None:
    """predict.py --explain, export.py and the report of the Lite0 classifier: with ``trained_runs``'s default run."""
    result = train.run(
        task="cls", model="efficientnet_lite0", data_dir=str(data["own"]), project=str(data["runs"]), fold="all",
        epochs=1, freeze_epochs=1, export=False, **SMALL,
    )  # fmt: skip
    run = Path(result["run_dir"])
    summary = json.loads((run / "cv_summary.json").read_text())
    assert summary["folds"] == 2 and "macro_f1" in summary
    ev = evaluate.main(evaluate.parse_args(["--run", str(run), "--data-dir", str(data["other"]), "--split", "all"]))
    assert sorted(ev) == ["fold0", "fold1"] and all(v["n_images"] > 0 for v in ev.values())  # another dataset


@pytest.mark.xdist_group("lite0_joint")
def test_joint_model_from_imagenet_predicts_mask_class_and_explanation_and_resumes(data, tmp_path: Path) -> None:
    result = train.run(
        task="joint", model="efficientnet_lite0_unet", data_dir=str(data["own"]), project=str(data["runs"]),
        epochs=1, freeze_epochs=1, base_filters=4, export=False, **SMALL,
    )  # fmt: skip
    run = Path(result["run_dir"])
    assert "lesion_dice" in result and "macro_f1" in result
    images = sorted((data["own"] / "benign").glob("*).png"))[:1]
    pred = predict.run([str(p) for p in images], model=str(run), out=str(tmp_path / "pred"), explain=True)
    assert pred.task == "joint" and all(Path(r["mask"]).is_file() and Path(r["explain"]).is_file() for r in pred.rows)
    # --resume continues it (one epoch more, the encoder still frozen: the frozen phase's graph is the cheap one)
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "metrics.json").unlink()
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "epochs": 2, "freeze_epochs": 2}))
    resumed = train.run(resume=str(copy))
    assert [int(float(r["epoch"])) for r in _history(copy)] == [1, 2] and resumed["epochs_completed"] == 2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(task="seg", model="efficientnet_lite0_unet", depth=3), "--depth sets the U-Net's levels"),
        (dict(task="seg", model="unet", weights="imagenet"), "needs an ImageNet encoder.*efficientnet_lite0_unet"),
        (dict(task="joint", model="efficientnet_lite0_unet", presence_head=True), "has a class head already"),
        (dict(task="cls", model="efficientnet_lite0_unet"), "must be a classifier"),
    ],
)
def test_options_that_do_not_fit_are_clear_errors(data, tmp_path: Path, overrides, message) -> None:
    with pytest.raises(OptionError, match=message):
        train.run(data_dir=str(data["own"]), project=str(tmp_path), epochs=1, **{**SMALL, **overrides})
