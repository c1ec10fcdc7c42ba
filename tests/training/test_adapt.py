"""`train.py --adapt RUN`: the source's architecture and weights, the encoder frozen, honest rules on a small fold."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

import evaluation.adapted as adapted
import train
from config.train import TrainConfig
from core.errors import OptionError
from data.synthetic import SynthConfig, generate_synthetic
from evaluation.gate import fit_gate
from evaluation.joint import head_model
from evaluation.run_files import load_run_model
from evaluation.support import POOLED, Support
from evaluation.tta import predict_records
from metrics.calibration import fit_temperature
from training.adapt import load_source
from training.data import fold_records, prepare_data

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("adapt_run")]
TINY = ["--img-size", "32", "--base-filters", "4", "--depth", "2", "--batch-size", "4", "--augment", "none"]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A one-epoch joint U-Net on one synthetic site: the run every test adapts."""
    root = tmp_path_factory.mktemp("adapt")
    data = generate_synthetic(root / "source", SynthConfig(per_class=20, size=64, seed=1))
    args = ["--task", "joint", "--data-dir", str(data), "--epochs", "1", "--no-export", *TINY]
    res = train.main(train.parse_args([*args, "--project", str(root / "runs"), "--name", "source"]))
    return Path(res["run_dir"])


def _adapt(source: Path, site: Path, project: Path) -> tuple[dict, str]:
    out = io.StringIO()
    args = ["--adapt", str(source), "--data-dir", str(site), "--epochs", "2", "--freeze-epochs", "2",
            "--no-export", "--batch-size", "4", "--augment", "none", "--project", str(project), "--name", "adapted",
            ]  # fmt: skip
    with contextlib.redirect_stdout(out):
        res = train.main(train.parse_args(args))
    return res, out.getvalue()


def test_an_adapted_run_keeps_the_encoder_and_pools_the_rules_its_fold_cannot_support(
    source: Path, tmp_path: Path, monkeypatch
) -> None:
    site = generate_synthetic(tmp_path / "site", SynthConfig(per_class=6, size=64, seed=7))
    real, counts = adapted.gate_support, []

    def gate_support(truths, probs):  # the fold falls one lesion image short, whatever the model found
        found = real(truths, probs)
        counts.append(found.n)
        return Support(found.what, found.n, counts[0] + 1)

    monkeypatch.setattr(adapted, "gate_support", gate_support)
    monkeypatch.setattr(adapted, "MIN_TEMPERATURE_CASES", 10)  # the fold's 4 cases fall short, the pool's 28 do not
    res, printed = _adapt(source, site, tmp_path / "runs")
    run = Path(res["run_dir"])
    cfg, src_cfg = TrainConfig.load(run / "config.json"), TrainConfig.load(source / "config.json")
    assert (cfg.task, cfg.img_size, cfg.base_filters, cfg.depth) == ("joint", 32, 4, 2) == (
        src_cfg.task, src_cfg.img_size, src_cfg.base_filters, src_cfg.depth)  # fmt: skip
    assert cfg.weights == str(source / "weights" / "best.keras") and cfg.adapt == str(source.resolve())
    assert "encoder: " in printed and "frozen (normalization trains) until epoch 2" in printed
    # Frozen throughout: the encoder's convolutions are the source's, its normalization and the decoder moved.
    before, after = load_run_model(source / "weights" / "best.keras"), load_run_model(run / "weights" / "best.keras")
    for name, same in (("enc0_conv1", True), ("bottleneck_conv2", True), ("enc0_norm1", False), ("dec0_conv1", False)):
        pairs = zip(before.get_layer(name).get_weights(), after.get_layer(name).get_weights(), strict=True)
        equal = all(np.array_equal(a, b) for a, b in pairs)
        assert equal == same, name
    metrics = json.loads((run / "metrics.json").read_text())
    gate_basis, t_basis = metrics["seg"]["lesion_gate"]["basis"], metrics["cls"]["calibration"]["basis"]
    assert gate_basis["fitted_on"] == t_basis["fitted_on"] == POOLED and "pooled with" in gate_basis["why"]
    assert "few_cases" in metrics and metrics["few_cases"] in printed  # the summary line says so too
    # The pooled rules are those fitted on the fold and the source's validation fold, as this model predicts them.
    data = prepare_data(cfg, run / "splits.json")
    val = fold_records(data, cfg, 0)[1]
    src = load_source(cfg)
    assert len(src.records) == json.loads((source / "metrics.json").read_text())["val_cases"]
    truths, probs = [], []
    for records in (val, src.records):
        _, t, (p,) = predict_records(head_model(after, "mask"), records, cfg, "seg", False)
        truths.append(t)
        probs.append(p)
    gate = json.loads((run / "lesion_gate.json").read_text())["gate"]
    assert gate == fit_gate(np.concatenate(truths), np.concatenate(probs)).to_dict()
    labels, raws = [], []
    for records in (val, src.records):
        _, onehot, (p,) = predict_records(head_model(after, "label"), records, cfg, "cls", False)
        labels.append(onehot.argmax(-1))
        raws.append(p.astype(np.float64))
    saved_t = json.loads((run / "temperature.json").read_text())["temperature"]
    assert saved_t == pytest.approx(fit_temperature(np.concatenate(labels), np.concatenate(raws)), rel=1e-5)
    keras.backend.clear_session()


def test_adapt_refuses_another_architecture_or_weights_and_survives_missing_source_data(source, tmp_path) -> None:
    site = str(tmp_path / "nowhere")
    with pytest.raises(OptionError, match=r"keeps the run's architecture; drop --img-size 64 \(the run's: 32\)"):
        train.run_config(train.parse_args(["--adapt", str(source), "--data-dir", site, "--img-size", "64"]))
    with pytest.raises(OptionError, match="drop --weights none"):
        train.run_config(train.parse_args(["--adapt", str(source), "--data-dir", site, "--weights", "none"]))
    cfg, _ = train.run_config(train.parse_args(["--adapt", str(source), "--data-dir", site, "--lr", "0.0005"]))
    assert (cfg.task, cfg.lr, cfg.loss) == ("joint", 0.0005, TrainConfig(task="joint").loss)  # the task's loss
    moved = tmp_path / "moved"
    shutil.copytree(source, moved)
    src_cfg = json.loads((moved / "config.json").read_text())
    (moved / "config.json").write_text(json.dumps({**src_cfg, "data_dir": [str(tmp_path / "gone")]}))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        gone = load_source(TrainConfig(task="joint", adapt=str(moved)))
    assert gone.records == () and gone.fold_dir == moved and "rules this run cannot fit are kept" in out.getvalue()
