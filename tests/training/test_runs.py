"""Run folders: incrementing names and finding a run's config and weights."""

from __future__ import annotations

import json

import pytest

from training.config import TrainConfig
from training.runs import increment_run_dir, resolve_run


def _fake_run(path, fold=0):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(TrainConfig(fold=fold).to_dict()))
    return path


def test_increment_run_dir_never_reuses_a_name(tmp_path):
    assert increment_run_dir(tmp_path, "seg", "exp") == tmp_path / "seg" / "exp"
    (tmp_path / "seg" / "exp").mkdir(parents=True)
    (tmp_path / "seg" / "exp2").mkdir()
    assert increment_run_dir(tmp_path, "seg", "exp") == tmp_path / "seg" / "exp3"


def test_resolve_run_finds_weights_of_a_run_and_of_one_fold(tmp_path):
    run = _fake_run(tmp_path / "single")
    (run / "weights").mkdir()
    (run / "weights" / "best.keras").write_bytes(b"x")
    cfg, file = resolve_run(run)
    assert cfg.fold == 0 and file == run / "weights" / "best.keras"
    with pytest.raises(FileNotFoundError, match="no last weights"):
        resolve_run(run, "last")

    cv = _fake_run(tmp_path / "cv", fold=-1)
    (cv / "fold1" / "weights").mkdir(parents=True)
    (cv / "fold1" / "weights" / "best.keras").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"cross-validation run with folds \['fold1'\].*fold1"):
        resolve_run(cv)
    cfg, file = resolve_run(cv / "fold1")
    assert cfg.fold == -1 and file == cv / "fold1" / "weights" / "best.keras"
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        resolve_run(tmp_path)
