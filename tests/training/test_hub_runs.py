"""The keras-hub transformers through `train.py`, evaluate, export, predict and the ensemble; resume's checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import ensemble
import predict
import train
from config.train import TrainConfig
from data.synthetic import SynthConfig, generate_synthetic
from evaluation.run_files import load_inference_model, load_run_model
from metrics.calibration import apply_temperature
from serving.signatures import PIXELS_INPUT, PIXELS_SIGNATURE

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("hub_runs")]

COMMON = dict(epochs=1, max_samples=12, batch_size=4, augment="none")


@pytest.fixture(scope="module")
def hub_runs(tmp_path_factory, classifier_run) -> dict[str, Path]:
    """One epoch of SegFormer-B0 on synthetic data, exported, beside conftest's DeiT-Tiny run.

    Both train under MirroredStrategy with two replicas (``--strategy auto`` on the two logical
    CPUs conftest exposes); the DeiT-Tiny run starts from a preset directory and trains in two
    phases (tests/training/test_cls.py checks them). Mixed precision is checked on the models
    (tests/models/test_hub.py); resume, on what it needs of a keras-hub model, the checkpoint
    with its optimizer (the resume loop itself is tested on the U-Net). MiT-B0's classifier is
    built and round-tripped in tests/models/test_hub.py; a CLI run of it would add a minute to
    the suite.
    """
    root = tmp_path_factory.mktemp("hub")
    data = str(generate_synthetic(root / "synth", SynthConfig(per_class=8, size=64, seed=1)))
    seg = train.run(task="seg", model="segformer_b0", img_size=64, data_dir=data, project=str(root / "runs"), **COMMON)
    return {"seg": Path(seg["run_dir"]), "deit": classifier_run.run_dir}


def test_runs_write_their_metrics_and_a_saved_model_that_matches_the_keras_file(hub_runs) -> None:
    for name, key in (("seg", "dice"), ("deit", "macro_f1")):
        metrics = json.loads((hub_runs[name] / "metrics.json").read_text())
        assert np.isfinite(metrics[key]), name
    for name, size in (("seg", 64), ("deit", 32)):
        x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
        want = np.asarray(load_inference_model(hub_runs[name] / "weights" / "best.keras")(x, training=False))
        served = tf.saved_model.load(str(hub_runs[name] / "saved_model")).signatures[PIXELS_SIGNATURE]
        got = served(**{PIXELS_INPUT: tf.constant(x)})
        if name == "seg":
            np.testing.assert_allclose(got["mask_probability"].numpy(), want[..., 0], atol=1e-5)
        else:  # the export serves the calibrated probabilities
            t = json.loads((hub_runs[name] / "temperature.json").read_text())["temperature"]
            np.testing.assert_allclose(got["probabilities"].numpy(), apply_temperature(want, t), atol=1e-5)


def test_last_checkpoint_loads_with_its_optimizer_for_resume(hub_runs) -> None:
    """What `--resume` needs of a keras-hub model: `last.keras` with its compiled loss and optimizer state.

    The resume loop itself is the trainer's, tested on the U-Net (tests/training/test_train.py).
    """
    model = load_run_model(hub_runs["seg"] / "weights" / "last.keras")
    assert int(model.optimizer.iterations.numpy()) > 0 and model.loss is not None


def test_predict_measures_lesions_and_explains_the_vit(hub_runs, tmp_path: Path) -> None:
    data = Path(TrainConfig.load(hub_runs["seg"] / "config.json").data_dir[0])
    images = [str(p) for p in sorted((data / "malignant").glob("*).png"))[:2]]
    seg = predict.run(images, model=str(hub_runs["seg"]), out=str(tmp_path / "seg"))
    assert [r["error"] for r in seg.rows] == ["", ""] and all(0 <= r["lesion_area_fraction"] <= 1 for r in seg.rows)
    cls = predict.run(images, model=str(hub_runs["deit"]), out=str(tmp_path / "cls"), explain=True)
    for row in cls.rows:
        assert row["class_name"] in ("normal", "benign", "malignant") and Path(row["explain"]).is_file()


def test_ensemble_takes_transformer_classifiers(hub_runs, tmp_path: Path) -> None:
    """evaluate.py on the DeiT run is in tests/training/test_cls.py's smoke test."""
    metrics = json.loads((hub_runs["deit"] / "metrics.json").read_text())
    # A second member from the same splits: the DeiT run under another name (ensemble.py reads predictions only).
    twin = tmp_path / "deit-twin"
    shutil.copytree(hub_runs["deit"], twin, ignore=shutil.ignore_patterns("saved_model", "weights"))
    out = tmp_path / "ens"
    result = ensemble.main(ensemble.parse_args(["--runs", str(hub_runs["deit"]), str(twin), "--out", str(out)]))
    assert set(result["members"]) == {hub_runs["deit"].name, "deit-twin"}
    assert result["ensemble"]["macro_f1"] == pytest.approx(metrics["macro_f1"])  # the mean of two equal members
