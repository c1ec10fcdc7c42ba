"""`train.py --task joint`: one model, both metric sets, the combined score, evaluate, predict, export, resume."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import evaluate
import predict
import train
from config.train import TrainConfig
from data.synthetic import SynthConfig, generate_synthetic
from evaluation.joint import agreement, head_history
from tests.conftest import REPO
from training.joint import build_joint_model, combined_score

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("joint_run")]
sys.path.insert(0, str(REPO / "benchmarks"))
import joint_busi  # noqa: E402


@pytest.fixture(scope="module")
def joint_run(tmp_path_factory) -> Path:
    """One epoch of the joint U-Net on synthetic data, on two replicas (MirroredStrategy).

    Mixed precision is checked on the model (tests/models/test_joint.py): bfloat16 falls back to slow
    kernels on CPUs without AVX-512, and the training loop is the one the bf16 segmentation test runs.
    """
    root = tmp_path_factory.mktemp("joint")
    data = generate_synthetic(root / "synth", SynthConfig(per_class=8, size=64, seed=1))
    result = train.run(
        task="joint", data_dir=str(data), project=str(root / "runs"), epochs=1, max_samples=12, img_size=32,
        base_filters=4, depth=2, batch_size=2, augment="none", consistency=0.5,
        devices=["/cpu:0", "/cpu:1"],
    )  # fmt: skip
    return Path(result["run_dir"])


def test_joint_run_writes_both_metric_sets(joint_run: Path) -> None:
    metrics = json.loads((joint_run / "metrics.json").read_text())
    for key in ("dice", "lesion_dice", "macro_f1", "macro_auc", "ece", "brier", "disagreement"):
        assert key in metrics, key
    assert metrics["seg"]["dice"] == metrics["dice"] and metrics["cls"]["macro_f1"] == metrics["macro_f1"]
    with open(joint_run / "cls" / "predictions.csv", newline="") as f:
        assert len(metrics["seg"]["per_image"]) == metrics["n_images"] == len(list(csv.DictReader(f))) > 0
    assert metrics["cls"]["calibration"]["temperature"] is not None
    assert metrics["monitor"] == "val_score"
    for name in ("seg/plots/best_worst.png", "seg/plots/learning_curves.png", "cls/plots/reliability.png",
                 "cls/plots/confusion_matrix.png", "cls/predictions.csv", "lesion_gate.json", "temperature.json",
                 "saved_model/saved_model.pb"):  # fmt: skip
        assert (joint_run / name).is_file(), name
    cfg = TrainConfig.load(joint_run / "config.json")
    assert (cfg.task, cfg.consistency, cfg.oversample) == ("joint", 0.5, True)


def test_best_epoch_is_chosen_by_the_combined_score(joint_run: Path) -> None:
    with open(joint_run / "history.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert float(row["val_score"]) == pytest.approx((float(row["val_mask_dice"]) + float(row["val_label_f1"])) / 2)
    assert np.isfinite(float(row["loss"]))


def test_saved_model_serves_mask_and_class_in_one_call(joint_run: Path) -> None:
    model = tf.saved_model.load(str(joint_run / "saved_model"))
    png = tf.io.encode_png(np.full((50, 40, 1), 120, np.uint8)).numpy()
    out = model.signatures["serving_default"](images=tf.constant([png]))
    assert out["probabilities"].shape == (1, 3) and out["mask_probability"].shape == (1, 32, 32)
    assert out["class_name"].numpy()[0].decode() in ("normal", "benign", "malignant")
    info = json.loads((joint_run / "saved_model" / "assets.extra" / "export.json").read_text())
    assert info["task"] == "joint" and info["temperature"] == pytest.approx(
        json.loads((joint_run / "temperature.json").read_text())["temperature"]
    )


def test_evaluate_scores_both_heads_with_postprocessing(joint_run: Path) -> None:
    results = evaluate.main(evaluate.parse_args(["--run", str(joint_run), "--postprocess", "largest"]))
    (res,) = results.values()
    before = json.loads((joint_run / "metrics.json").read_text())
    assert res["seg"]["postprocess"] == "largest" and "lesions" in res["seg"]
    assert res["macro_f1"] == pytest.approx(before["macro_f1"])  # the class head is scored as in training
    assert res["ece"] == pytest.approx(before["ece"])
    out = joint_run / "eval" / "own-val-largest"
    assert (out / "metrics.json").is_file() and (out / "cls" / "plots" / "roc.png").is_file()
    row = joint_busi.read_row("joint", 0, joint_run)  # the benchmark reads what a real joint run writes
    assert row["lesion_dice"] == before["lesion_dice"] and row["macro_f1"] == before["macro_f1"]
    assert row["normal_lesions_largest"] == res["seg"]["lesions"]["normal_mean"]
    assert row["ece_before"] == before["cls"]["calibration"]["before"]["ece"] and row["train_images_per_second"] > 0


def test_predict_gives_one_row_with_class_probabilities_and_measurements(joint_run: Path, tmp_path: Path) -> None:
    images = sorted((Path(TrainConfig.load(joint_run / "config.json").data_dir[0]) / "benign").glob("*).png"))[:2]
    result = predict.run([str(p) for p in images], model=str(joint_run), out=str(tmp_path / "pred"), explain=True)
    assert len(result.rows) == 2 and result.task == "joint"
    for row in result.rows:
        assert not row["error"]
        assert row["class_name"] in ("normal", "benign", "malignant")
        assert sum(row[f"prob_{c}"] for c in ("normal", "benign", "malignant")) == pytest.approx(1.0, abs=1e-5)
        assert 0 <= row["lesion_area_fraction"] <= 1 and Path(row["mask"]).is_file()
        assert Path(row["overlay"]).is_file() and Path(row["explain"]).is_file()


def test_resume_continues_a_joint_run_with_its_optimizer_and_losses(joint_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(joint_run, copy)
    (copy / "metrics.json").unlink()
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "epochs": 2, "export": False}))  # one epoch more
    result = train.run(resume=str(copy))
    with open(copy / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(float(r["epoch"])) for r in rows] == [1, 2]
    assert all(np.isfinite(float(r["label_loss"])) and "val_score" in r for r in rows)
    assert result["epochs_completed"] == 2 and (copy / "metrics.json").is_file()


def test_combined_score_and_head_history() -> None:
    logs = {"val_mask_dice": 0.6, "val_label_f1": 0.4, "loss": 1.0}
    assert combined_score(logs) == pytest.approx(0.5)
    with pytest.raises(KeyError, match="val_label_f1"):
        combined_score({"val_mask_dice": 0.6})
    rows = [{"epoch": 1, "loss": 2.0, "mask_loss": 1.5, "val_mask_dice": 0.3, "label_f1": 0.2, "val_label_loss": 1}]
    assert head_history(rows, "mask") == [{"epoch": 1, "loss": 1.5, "val_dice": 0.3}]
    assert head_history(rows, "label") == [{"epoch": 1, "f1": 0.2, "val_loss": 1}]


def test_agreement_counts_both_kinds_of_disagreement() -> None:
    labels = ["normal", "benign", "malignant", "normal"]
    got = agreement(labels, np.array([0, 1, 0, 2]), np.array([False, True, True, True]))
    assert got["called_normal_with_mask"] == 1  # image 0
    assert got["called_lesion_with_empty_mask"] == 2  # images 1 and 3
    assert got["disagreement"] == pytest.approx(3 / 4) and got["n"] == 4


def test_joint_options_are_checked() -> None:
    with pytest.raises(ValueError, match="for --task joint"):
        TrainConfig(task="seg", consistency=1.0)
    with pytest.raises(ValueError, match="cls_weight"):
        TrainConfig(task="joint", cls_weight=-1)
    assert TrainConfig(task="joint").oversample and not TrainConfig(task="joint", cls_loss="focal").oversample
    with pytest.raises(ValueError, match="for --task joint"):
        build_joint_model(TrainConfig(task="joint", model="efficientnet_b0"))
    with pytest.raises(ValueError, match="ImageNet encoder"):
        build_joint_model(TrainConfig(task="joint", model="unet", weights="imagenet"))
    with pytest.raises(ValueError, match="presence-head"):
        build_joint_model(TrainConfig(task="joint", model="efficientnet_b0_unet", presence_head=True))
