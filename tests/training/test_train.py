"""`train.py --task seg`: run folder, resume after SIGKILL, distribution, mixed precision."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

import train
from cli import exit_on_user_error
from data.report import InspectOptions, analyze_dataset
from data.splits import save_splits
from data.synthetic import SynthConfig, generate_synthetic
from evaluation.run_files import load_run_model
from tests.conftest import REPO
from training.checkpoint import read_state

pytestmark = pytest.mark.slow

TINY = {"img_size": 32, "base_filters": 4, "batch_size": 4, "augment": "none"}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """A small synthetic dataset (8 cases per class, 64 px high)."""
    return generate_synthetic(tmp_path_factory.mktemp("d") / "synth", SynthConfig(per_class=8, size=64, seed=1))


def _args(data: Path, project: Path, **extra) -> list[str]:
    out = ["--task", "seg", "--data-dir", str(data), "--project", str(project)]
    for k, v in {**TINY, **extra}.items():
        out += [f"--{k.replace('_', '-')}", str(v)]
    return out


@pytest.fixture(scope="module")
def smoke_run(trained_runs) -> Path:
    """The session's tiny segmentation run (``train.run(task="seg", epochs=1, max_samples=8)``, see conftest).

    Shared by the smoke, bad-fold and evaluate tests, which only add files beside what the run wrote.
    """
    assert trained_runs["seg"].name == "exp"
    return trained_runs["seg"]


def test_smoke_run_writes_every_artifact(smoke_run, tiny_data) -> None:
    run_dir = smoke_run
    for name in ("config.json", "splits.json", "history.csv", "metrics.json", "state.json"):
        assert (run_dir / name).is_file(), name
    for name in ("best.keras", "last.keras"):
        assert (run_dir / "weights" / name).is_file()
    for name in ("learning_curves.png", "dice_histogram.png", "best_worst.png"):
        assert (run_dir / "plots" / name).is_file()
    assert (run_dir / "saved_model" / "saved_model.pb").is_file()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    fold0 = json.loads((run_dir / "splits.json").read_text())["folds"][0]
    assert 0.0 <= metrics["dice"] <= 1.0
    assert metrics["val_cases"] == min(8, len(fold0["val"])) == len(metrics["per_image"])
    assert metrics["dice_ci95"][0] <= metrics["dice"] <= metrics["dice_ci95"][1]
    # The lesion gate is fitted on the validation fold, saved, reported and exported with the run.
    gate = json.loads((run_dir / "lesion_gate.json").read_text())
    assert set(gate["gate"]) == {"min_area", "min_confidence"} and len(gate["halves"]) == 2
    assert sorted(i for h in gate["halves"] for i in h["ids"]) == sorted(p["id"] for p in metrics["per_image"])
    assert metrics["lesion_gate"]["gate"] == gate["gate"]
    for key in ("normal_left_empty", "lesion_left_empty", "lesion_dice"):
        assert key in metrics and key in metrics["ungated"]
    assert json.loads((run_dir / "saved_model" / "assets.extra" / "export.json").read_text())["gate"] == gate["gate"]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["epochs"] == 1 and config["img_size"] == 32
    with open(run_dir / "history.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert 0 < float(row["train_seconds"]) <= float(row["epoch_seconds"])
    seconds = metrics["seconds"]  # where the fold's time went
    assert set(seconds) == {
        "datasets_and_model", "first_epoch", "other_epochs", "validation", "checkpoints", "evaluate", "on_best"
    }  # fmt: skip
    assert seconds["checkpoints"] == pytest.approx(float(row["checkpoint_seconds"])) and seconds["checkpoints"] > 0
    assert seconds["first_epoch"] == pytest.approx(float(row["train_seconds"]))
    assert seconds["other_epochs"] == 0 and all(v >= 0 for v in seconds.values())


def test_bad_fold_is_a_clear_error_and_writes_nothing(smoke_run, capsys) -> None:
    project = smoke_run.parents[1]
    (data,) = json.loads((smoke_run / "config.json").read_text())["data_dir"]
    before = sorted(p.name for p in (project / "seg").iterdir())
    status = exit_on_user_error(lambda: train.main(train.parse_args(_args(Path(data), project, fold=9, epochs=1))))
    out, err = capsys.readouterr()
    assert status == 2 and "`--fold` must be 0..4" in err and "Traceback" not in err
    # A taken name is incremented, never reused (exp -> exp2); the bad fold stops the run before anything is
    # written, so exp2 is not made and the name is not used up.
    assert f"run folder: {project / 'seg' / 'exp2'}" in out
    assert sorted(p.name for p in (project / "seg").iterdir()) == before == ["exp"]


def test_bad_size_is_a_clear_error(tiny_data, tmp_path) -> None:
    with pytest.raises(ValueError, match="multiple of 16"):
        train.run(epochs=1, max_samples=4, data_dir=str(tiny_data), project=str(tmp_path), img_size=40)


def _history_epochs(run_dir: Path) -> list[int]:
    with open(run_dir / "history.csv", newline="") as f:
        return [int(float(r["epoch"])) for r in csv.DictReader(f)]


def test_sigkill_then_resume_continues_at_the_next_epoch(tiny_data, tmp_path) -> None:
    epochs = 5
    cmd = [sys.executable, "train.py", *_args(tiny_data, tmp_path, epochs=epochs, max_samples=8, name="r", patience=0)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_dir = tmp_path / "seg" / "r"
    state_path = run_dir / "state.json"
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if state_path.is_file() and json.loads(state_path.read_text())["epoch"] >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "training finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    k = read_state(run_dir)["epoch"]  # what --resume reads: the folder brought to its last committed epoch
    assert 2 <= k < epochs
    # Nothing corrupt: both checkpoints load, history has exactly the completed epochs.
    load_run_model(run_dir / "weights" / "last.keras")  # registers our losses: this test may run alone
    load_run_model(run_dir / "weights" / "best.keras")
    assert _history_epochs(run_dir) == list(range(1, k + 1))
    config_before, splits_before = (run_dir / "config.json").read_text(), (run_dir / "splits.json").read_text()
    # The dataset's shared splits change meanwhile (another run re-split it): the run keeps its own.
    shared = tmp_path / "data" / "synth" / "splits.json"
    doc = json.loads(shared.read_text())
    doc["folds"] = doc["folds"][1:] + doc["folds"][:1]
    shared.write_text(json.dumps(doc))
    resumed = subprocess.run(
        [sys.executable, "train.py", "--resume", str(run_dir)], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming after epoch {k} of {epochs}" in resumed.stdout
    assert _history_epochs(run_dir) == list(range(1, epochs + 1))
    assert (run_dir / "config.json").read_text() == config_before
    assert (run_dir / "splits.json").read_text() == splits_before
    assert json.loads((run_dir / "state.json").read_text())["epoch"] == epochs
    assert (run_dir / "metrics.json").is_file()
    assert not list(run_dir.rglob("*.tmp*"))


def test_mirrored_two_devices_matches_single_device(tiny_data, tmp_path) -> None:
    common = dict(
        task="seg",
        epochs=1,
        max_samples=16,
        data_dir=str(tiny_data),
        dropout=0.0,
        seed=3,
        export=False,
        **{**TINY, "batch_size": 2},
    )
    two = train.run(devices=["/cpu:0", "/cpu:1"], project=str(tmp_path / "two"), **common)
    # One device with the same global batch (2 x 2) and the same scaled learning rate.
    one = train.run(devices=["/cpu:0"], project=str(tmp_path / "one"), **{**common, "batch_size": 4, "lr": 2e-3})
    loss = {}
    for name, res in (("two", two), ("one", one)):
        with open(Path(res["run_dir"]) / "history.csv", newline="") as f:
            loss[name] = float(next(csv.DictReader(f))["loss"])
    assert np.isfinite(loss["two"]) and loss["two"] == pytest.approx(loss["one"], rel=0.02)


def test_bf16_run_has_float32_outputs_and_finite_loss(tiny_data, tmp_path) -> None:
    res = train.run(
        task="seg",
        epochs=1,
        max_samples=8,
        data_dir=str(tiny_data),
        project=str(tmp_path),
        mixed_precision="bf16",
        export=False,
        **TINY,
    )
    run_dir = Path(res["run_dir"])
    with open(run_dir / "history.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert np.isfinite(float(row["loss"])) and np.isfinite(float(row["val_loss"]))
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = keras.models.load_model(run_dir / "weights" / "best.keras")
        assert model.get_layer("enc0_conv1").compute_dtype == "bfloat16"
        out = model(np.zeros((1, 32, 32, 3), "float32"))
        assert keras.ops.convert_to_numpy(out).dtype == np.float32
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_two_local_workers_train_one_epoch_with_multiworker(tiny_data, tmp_path) -> None:
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        cmd = [
            sys.executable,
            "train.py",
            *_args(tiny_data, tmp_path, epochs=1, max_samples=8, name="mw", strategy="multiworker"),
            "--no-export",
        ]
        procs.append(
            subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        )
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=600)[0])
        finally:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
    assert all("2 replica(s)" in o for o in outs)
    run_dir = tmp_path / "seg" / "mw"
    assert (run_dir / "metrics.json").is_file() and _history_epochs(run_dir) == [1]


def test_evaluate_run_on_own_and_external_data(smoke_run, tmp_path) -> None:
    import evaluate

    run_dir = smoke_run
    own = evaluate.main(evaluate.parse_args(["--run", str(run_dir)]))
    trained = json.loads((run_dir / "metrics.json").read_text())
    fold0 = json.loads((run_dir / "splits.json").read_text())["folds"][0]
    assert own["fold0"]["n_images"] == trained["val_cases"] == min(8, len(fold0["val"]))  # the run's own cases
    assert own["fold0"]["dice"] == pytest.approx(trained["dice"], abs=1e-6)  # same weights, same cases
    assert (run_dir / "eval" / "own-val" / "plots" / "dice_histogram.png").is_file()
    other = generate_synthetic(tmp_path / "site2", SynthConfig(per_class=3, size=64, seed=9))
    ext = evaluate.main(evaluate.parse_args(["--run", str(run_dir), "--data-dir", str(other)]))
    assert ext["fold0"]["n_images"] == 9
    assert (run_dir / "eval" / "site2-all" / "metrics.json").is_file()
    # --postprocess largest: one lesion at most per mask, scored into its own folder; the raw maps stay "ungated".
    clean = evaluate.main(
        evaluate.parse_args(["--run", str(run_dir), "--data-dir", str(other), "--postprocess", "largest"])
    )
    saved = json.loads((run_dir / "eval" / "site2-all-largest" / "metrics.json").read_text())
    assert saved["postprocess"] == "largest" and ext["fold0"]["postprocess"] == "none"
    assert all(r["lesions"] <= 1 for r in saved["per_image"])
    assert [r["lesions"] > 0 for r in saved["per_image"]] == [r["lesions"] > 0 for r in ext["fold0"]["per_image"]]
    assert clean["fold0"]["ungated"] == ext["fold0"]["ungated"]
    assert saved["lesions"]["lesion_several"] == 0.0
    with pytest.raises(ValueError, match="--split val"):
        evaluate.main(evaluate.parse_args(["--run", str(run_dir), "--data-dir", str(other), "--split", "val"]))


def test_fold_all_trains_every_fold_and_summarizes(tiny_data, tmp_path) -> None:
    # A user's own 2-fold splits: every fold of whatever file is given is trained (2 keep the test short).
    splits = save_splits(tmp_path / "two_folds.json", analyze_dataset(tiny_data, InspectOptions(folds=2)).splits)
    res = train.run(
        task="seg",
        epochs=1,
        max_samples=6,
        fold="all",
        splits=str(splits),
        data_dir=str(tiny_data),
        project=str(tmp_path),
        export=False,
        **TINY,
    )
    run_dir = Path(res["run_dir"])
    summary = json.loads((run_dir / "cv_summary.json").read_text())
    assert summary["folds"] == 2
    per_fold = [json.loads((run_dir / f"fold{k}" / "metrics.json").read_text())["dice"] for k in range(2)]
    assert summary["dice"]["per_fold"] == pytest.approx(per_fold)
    assert summary["dice"]["mean"] == pytest.approx(float(np.mean(per_fold)))
    assert summary["dice"]["std"] == pytest.approx(float(np.std(per_fold, ddof=1)))
    lo, hi = summary["dice"]["ci95"]
    assert min(per_fold) <= lo <= summary["dice"]["mean"] <= hi <= max(per_fold)
    for k in range(2):
        assert (run_dir / f"fold{k}" / "weights" / "best.keras").is_file()
        assert not (run_dir / f"fold{k}" / "saved_model").exists()  # --no-export
        assert (run_dir / f"fold{k}" / "lesion_gate.json").is_file()  # each fold's own gate
    val_sets = [set(json.loads((run_dir / "splits.json").read_text())["folds"][k]["val"]) for k in range(2)]
    assert all(not (a & b) for i, a in enumerate(val_sets) for b in val_sets[i + 1 :])
    # evaluate.py on a --fold all run evaluates every fold's best weights on its own validation cases.
    import evaluate

    ev = evaluate.main(evaluate.parse_args(["--run", str(run_dir)]))
    assert sorted(ev) == [f"fold{k}" for k in range(2)]
    assert [ev[f"fold{k}"]["dice"] for k in range(2)] == pytest.approx(per_fold, abs=1e-6)
    # An interrupted cross-validation resumes: finished folds are kept, the rest completes, the summary returns.
    (run_dir / "fold1" / "metrics.json").unlink()
    (run_dir / "cv_summary.json").unlink()
    again = train.main(train.parse_args(["--resume", str(run_dir)]))
    assert json.loads((run_dir / "cv_summary.json").read_text())["dice"]["per_fold"] == pytest.approx(per_fold)
    assert again["dice"]["mean"] == pytest.approx(summary["dice"]["mean"])


def test_a_lesion_image_without_its_mask_stops_training_unless_left_out(tiny_data, tmp_path, capsys) -> None:
    import shutil

    from core.errors import DataError

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    val = analyze_dataset(data, InspectOptions()).splits["folds"][0]["val"]
    gone = next(i for i in val if i.startswith("benign"))  # a validation image, so its absence shows in the metrics
    (data / "benign" / f"{gone}_mask.png").unlink()
    common = dict(epochs=1, data_dir=str(data), project=str(tmp_path / "runs"), export=False, **TINY)
    with pytest.raises(DataError, match=rf"{re.escape(gone)}\.png: benign image has no mask"):
        train.run(**common)
    assert not (tmp_path / "runs" / "seg").exists()  # no run folder before the data are checked
    result = train.run(leave_out_unmasked=True, **common)
    run_dir = Path(result["run_dir"])
    assert json.loads((run_dir / "unmasked.json").read_text())["ids"] == [gone]
    assert "left out 1 lesion image(s) without a mask" in capsys.readouterr().out
    ids = [r["id"] for r in json.loads((run_dir / "metrics.json").read_text())["per_image"]]
    assert sorted(ids) == sorted(i for i in val if i != gone)
