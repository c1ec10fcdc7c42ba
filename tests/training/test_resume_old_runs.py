"""Runs written by the code before the evaluation layer (fd7c1ca) resume with today's code.

``tests/fixtures/old_runs/runs`` holds a joint run (both heads: the segmentation and the
classification code paths) killed right after epoch 1 of 2 (``make_old_run.py`` there says how it
was made), with the dataset report and splits it wrote. Resuming must pick up its weights,
optimizer state and history, train epoch 2, and score the best weights with what the new code fits.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

import evaluate
import train
from data.synthetic import SynthConfig, generate_synthetic
from tests.conftest import REPO

FIXTURE = REPO / "tests" / "fixtures" / "old_runs"


def _rows(path: Path) -> list[dict[str, float]]:
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


@pytest.mark.slow
def test_a_run_written_before_the_evaluation_layer_resumes_and_evaluates(tmp_path, monkeypatch, capsys) -> None:
    work = tmp_path / "work"
    shutil.copytree(FIXTURE / "runs", work / "runs")
    monkeypatch.chdir(work)
    generate_synthetic(Path("synth"), SynthConfig(per_class=8, size=64, seed=1))  # the data the runs were trained on
    run_dir = Path("runs") / "joint" / "old"
    old_history = _rows(run_dir / "history.csv")
    assert json.loads((run_dir / "state.json").read_text())["epoch"] == 1 and len(old_history) == 1
    assert not (run_dir / "metrics.json").exists()

    result = train.run(resume=str(run_dir))

    out = capsys.readouterr().out
    assert "fold 0: resuming after epoch 1 of 2" in out
    assert result["epochs_completed"] == 2 and result["fold"] == 0
    history = _rows(run_dir / "history.csv")
    assert len(history) == 2 and history[0] == pytest.approx(old_history[0])  # epoch 1 as the old code wrote it
    assert json.loads((run_dir / "state.json").read_text())["epoch"] == 2
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (run_dir / "lesion_gate.json").is_file() and (run_dir / "temperature.json").is_file()
    assert {"seg", "cls"} <= set(metrics)
    again = evaluate.main(evaluate.parse_args(["--run", str(run_dir)]))["fold0"]
    for key in ("dice", "macro_f1", "malignant_auc"):  # evaluate.py reproduces training's figures
        assert again[key] == pytest.approx(metrics[key])
