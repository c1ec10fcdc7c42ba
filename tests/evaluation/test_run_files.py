"""Run folders: incrementing names, finding a run's config and weights, loading its model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from config.train import TrainConfig
from evaluation.run_files import increment_run_dir, resolve_run
from losses.segmentation import BceDiceLoss
from models.classifier import CaffePreprocess


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


def test_a_fresh_interpreter_loads_a_model_with_custom_layers_and_loss(tmp_path) -> None:
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1)(CaffePreprocess()(inputs)))
    model.compile(loss=BceDiceLoss())
    model.save(tmp_path / "m.keras")
    repo = Path(__file__).resolve().parents[2]

    def load(code: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", f"import keras\n{code}\nprint(type(model.loss).__name__)"],
            cwd=repo,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(repo)},
        )

    plain = load(f"model = keras.models.load_model({str(tmp_path / 'm.keras')!r})")
    assert plain.returncode != 0 and "CaffePreprocess" in plain.stderr  # what the helper is for
    model_file = str(tmp_path / "m.keras")
    ours = load(f"from evaluation.run_files import load_run_model\nmodel = load_run_model({model_file!r})")
    assert ours.returncode == 0, ours.stderr[-2000:]
    assert ours.stdout.strip().splitlines()[-1] == "BceDiceLoss"


@pytest.mark.slow
def test_a_keras_hub_model_saved_frozen_loads_frozen_with_its_optimizer_state(tmp_path: Path) -> None:
    """The first phase of a preset run saves the backbone frozen; resume must get it back frozen.

    keras-hub rebuilds a backbone's layers from its config, so without load_run_model's care the
    layers inside load trainable and the saved optimizer state (built for the head) is skipped.
    """
    import numpy as np

    from evaluation.run_files import load_run_model
    from models.registry import build_model

    model = build_model("deit_tiny", img_size=32)
    model.get_layer("backbone").trainable = False
    model.compile(keras.optimizers.Adam(1e-3), "categorical_crossentropy")
    model.fit(np.zeros((4, 32, 32, 3), "float32"), np.eye(3)[[0, 1, 2, 0]], verbose=0)
    head = len(model.trainable_variables)
    model.save(tmp_path / "phase1.keras")
    loaded = load_run_model(tmp_path / "phase1.keras")
    assert len(loaded.trainable_variables) == head == 2  # the head's kernel and bias
    assert [v.path for v in loaded.optimizer.variables] == [v.path for v in model.optimizer.variables]
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-6)
    # Unfreezing the loaded model (the next phase) makes the backbone trainable again.
    loaded.get_layer("backbone").trainable = True
    assert len(loaded.trainable_variables) > 100


def test_run_dirs_increment_and_never_overwrite(tmp_path) -> None:
    assert increment_run_dir(tmp_path, "seg", "exp") == tmp_path / "seg" / "exp"
    (tmp_path / "seg" / "exp").mkdir(parents=True)
    assert increment_run_dir(tmp_path, "seg", "exp").name == "exp2"
    (tmp_path / "seg" / "exp2").mkdir()
    assert increment_run_dir(tmp_path, "seg", "exp").name == "exp3"
