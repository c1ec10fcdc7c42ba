"""`train.py --task cls`: run folder, metrics and plots, two-phase fine-tuning, evaluate, ensemble."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import ensemble
import evaluate
import train
from config.train import TrainConfig
from core.atomic import write_json, write_text
from core.classes import CLASS_NAMES
from data.discover import discover
from data.synthetic import SynthConfig, generate_synthetic
from evaluation.cls import predictions_csv
from evaluation.run_files import load_run_model
from models.classifier import CaffePreprocess
from training.cls import cls_phases
from training.seg import seg_phases
from training.task import Phase

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("d") / "synth", SynthConfig(per_class=8, size=64, seed=1))


def _rows(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "history.csv", newline="") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def test_defaults_pick_the_classification_model_and_loss() -> None:
    cfg = TrainConfig(task="cls")
    assert (cfg.model, cfg.weights, cfg.loss, cfg.oversample) == ("efficientnet_lite0", "imagenet", "ce", True)
    seg = TrainConfig()
    assert (seg.model, seg.weights, seg.loss, seg.oversample) == ("unet", "none", "bce_dice", False)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    # ImageNet by default only where the weights install with the project; an explicit choice stands
    assert TrainConfig(task="cls", model="efficientnet_b0").weights == "none"
    assert TrainConfig(task="cls", weights="none").weights == "none"
    assert TrainConfig(task="seg", model="efficientnet_lite0_unet").weights == "imagenet"
    assert TrainConfig(task="joint", model="efficientnet_b0_unet").weights == "none"
    assert train.config_from_args(train.parse_args(["--task", "cls"])).weights == "imagenet"
    assert train.config_from_args(train.parse_args(["--task", "cls", "--model", "resnet50"])).weights == "none"

    def flags(*argv: str) -> tuple[str, bool]:
        cfg = train.config_from_args(train.parse_args(["--task", "cls", *argv]))
        return cfg.loss, cfg.oversample

    # Oversampling follows the loss unless asked for: sampling or weights, not both.
    assert flags() == ("ce", True)
    assert flags("--no-oversample") == ("ce", False)
    assert flags("--loss", "focal") == ("focal", False)
    assert flags("--loss", "weighted_ce") == ("weighted_ce", False)
    assert flags("--loss", "weighted_ce", "--oversample") == ("weighted_ce", True)


def test_imagenet_weights_train_in_two_phases_or_frozen_throughout() -> None:
    phases = cls_phases(TrainConfig(task="cls", weights="imagenet", epochs=10, freeze_epochs=3))
    assert phases == [Phase(3, 1.0, False), Phase(10, 0.1, True)]
    assert cls_phases(TrainConfig(task="cls", weights="none", epochs=10)) == [Phase(10)]
    assert cls_phases(TrainConfig(task="cls", epochs=10)) == phases  # the default: Lite0 from ImageNet
    # --freeze-epochs as long as the run: the encoder stays frozen (a linear probe); 0: it trains from the start
    assert cls_phases(TrainConfig(task="cls", weights="imagenet", epochs=3, freeze_epochs=3)) == [Phase(3, 1.0, False)]
    assert cls_phases(TrainConfig(task="cls", weights="imagenet", epochs=3, freeze_epochs=0)) == [Phase(3)]
    assert seg_phases(TrainConfig(task="seg", model="efficientnet_lite0_unet", weights="imagenet", epochs=4,
                                  freeze_epochs=1)) == [Phase(1, 1.0, False), Phase(4, 0.1, True)]  # fmt: skip
    assert seg_phases(TrainConfig(task="seg", epochs=4)) == [Phase(4)]


def test_phases_freeze_then_unfreeze_the_backbone_at_a_lower_rate(classifier_run) -> None:
    """A preset's two phases (conftest's DeiT-Tiny run from a preset directory: --epochs 2 --freeze-epochs 1)."""
    res, out = classifier_run.result, classifier_run.stdout
    # Each phase trains from one iterator: the dataset repeats and an epoch is its batches per pass.
    steps = res["train_cases"] // int(re.search(r"global batch (\d+)", out).group(1))
    assert steps >= 1
    assert classifier_run.fits == [(tf.data.INFINITE_CARDINALITY, steps, 0), (tf.data.INFINITE_CARDINALITY, steps, 1)]
    assert "backbone frozen until epoch 1" in out and "backbone trainable until epoch 2" in out
    rows = _rows(classifier_run.run_dir)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["lr"] == pytest.approx(rows[0]["lr"] * 0.1)  # --lr (times replicas), then a tenth of it
    last = load_run_model(classifier_run.run_dir / "weights" / "last.keras")
    assert last.get_layer("backbone").trainable


def test_smoke_run_writes_metrics_predictions_and_plots(classifier_run, tmp_path) -> None:
    run_dir = classifier_run.run_dir
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc"):
        assert f"{key}_ci95" in metrics
    assert set(metrics["per_class"]) == {"normal", "benign", "malignant"}
    fold0 = json.loads((run_dir / "splits.json").read_text())["folds"][0]
    n_val = min(8, len(fold0["val"]))
    assert sum(map(sum, metrics["confusion"])) == metrics["val_cases"] == n_val
    with open(run_dir / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n_val and set(rows[0]) == {
        "case_id",
        "label",
        "pred",
        "prob_normal",
        "prob_benign",
        "prob_malignant",
    }
    for name in ("learning_curves.png", "confusion_matrix.png", "roc.png", "confident_wrong.png", "reliability.png"):
        assert (run_dir / "plots" / name).is_file(), name
    assert {"val_f1", "val_auc", "val_accuracy"} <= set(_rows(run_dir)[0])
    model = load_run_model(run_dir / "weights" / "best.keras")
    assert model.name == "deit_tiny" and model.output_shape == (None, 3)
    # evaluate.py handles classification runs too, also on another dataset.
    own = evaluate.main(evaluate.parse_args(["--run", str(run_dir)]))
    assert own["fold0"]["macro_f1"] == pytest.approx(metrics["macro_f1"], abs=1e-6)
    # The fold's temperature is saved, and its own cases are scored with the cross-fitted halves' (again here).
    calibration = metrics["calibration"]
    saved = json.loads((run_dir / "temperature.json").read_text())
    assert calibration["temperature"] == saved["temperature"] > 0
    assert calibration["scored_with"].startswith("each half of the validation fold")
    assert own["fold0"]["ece"] == pytest.approx(metrics["ece"], abs=1e-9) == calibration["after"]["ece"]
    assert {"ece", "ece_ci95", "brier", "brier_ci95", "nll"} <= set(calibration["before"])
    other = generate_synthetic(tmp_path / "site2", SynthConfig(per_class=2, size=64, seed=4))
    ext = evaluate.main(evaluate.parse_args(["--run", str(run_dir), "--data-dir", str(other)]))
    with pytest.raises(ValueError, match="`--postprocess largest` is for segmentation runs"):
        evaluate.main(evaluate.parse_args(["--run", str(run_dir), "--postprocess", "largest"]))
    assert ext["fold0"]["n_images"] == 6
    assert (run_dir / "eval" / "site2-all" / "plots" / "roc.png").is_file()
    # evaluate.py in its own process loads a model with our custom layers (ResNet's Caffe preprocessing),
    # put into a copy of the run so that the shared run keeps its own weights.
    copy = Path(shutil.copytree(run_dir, tmp_path / "run", ignore=shutil.ignore_patterns("saved_model", "eval")))
    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.GlobalAveragePooling2D()(CaffePreprocess()(inputs))
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x)).save(copy / "weights" / "best.keras")
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "evaluate.py", "--run", str(copy)], cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"fold 0 on {classifier_run.data} (val, {n_val} cases)" in proc.stdout


def _fake_cv_run(root: Path, name: str, data: Path, seed: int) -> Path:
    """A finished 5-fold classification run as ensemble.py reads it: config.json and per-fold predictions.csv.

    Training is covered above; a stand-in keeps this test to seconds.
    """
    cases = discover(data)
    ids = sorted(cases)
    rng = np.random.default_rng(seed)
    run = root / name
    write_json(run / "config.json", TrainConfig(task="cls", fold=-1, data_dir=str(data), img_size=32).to_dict())
    for k in range(5):
        mine = ids[k::5]
        labels = np.array([CLASS_NAMES.index(cases[i].label) for i in mine])
        logits = rng.normal(size=(len(mine), 3))
        logits[np.arange(len(mine)), labels] += 1.5
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        write_text(run / f"fold{k}" / "predictions.csv", predictions_csv(mine, labels, probs))
    return run


def test_ensemble_cli_soft_weighted_and_stacked(tiny_data, tmp_path) -> None:
    runs = [str(_fake_cv_run(tmp_path / "runs", f"m{s}", tiny_data, s)) for s in range(3)]
    n = len(discover(tiny_data))
    for method in ("soft", "weighted", "stack"):
        out = tmp_path / f"ens-{method}"
        result = ensemble.main(ensemble.parse_args(["--runs", *runs, "--method", method, "--out", str(out)]))
        assert result["ensemble"]["n_images"] == n and set(result["members"]) == {"m0", "m1", "m2"}
        for name in ("predictions.csv", "metrics.json", "plots/roc.png", "plots/confusion_matrix.png"):
            assert (out / name).is_file(), name
        assert (out / "plots" / "confident_wrong.png").is_file()
        assert (out / "members" / "m0" / "plots" / "confident_wrong.png").is_file()
    soft = json.loads((tmp_path / "ens-soft" / "metrics.json").read_text())
    assert soft["ensemble"]["macro_f1"] >= min(m["macro_f1"] for m in soft["members"].values())
    with pytest.raises(ValueError, match="at least two"):
        ensemble.main(ensemble.parse_args(["--runs", runs[0]]))
