"""Checkpoints: a kill at any instant of an epoch's checkpoint resumes to exactly one completed epoch."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import keras
import numpy as np

from evaluation.run_files import load_run_model
from training.checkpoint import RunCheckpoint, read_history, read_state


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs."""


class Marker(keras.callbacks.Callback):
    """Logs ``marker`` = the epoch (so every epoch improves) and keeps the model's state as the epoch left it."""

    def __init__(self) -> None:
        super().__init__()
        self.states: dict[int, list[np.ndarray]] = {}

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs["marker"] = float(epoch)
        self.states[epoch + 1] = _state(self.model)


def _state(model: keras.Model) -> list[np.ndarray]:
    """Weights and optimizer variables (iterations and moments)."""
    return [np.array(v) for v in [*model.weights, *model.optimizer.variables]]


def _model() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    return model


def _fit(model, run_dir: Path, epochs: int, initial: int, marker: Marker) -> None:
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    state = read_state(run_dir) if initial else None
    ckpt = RunCheckpoint(run_dir, "marker", "max", patience=0, state=state, history=read_history(run_dir, initial))
    model.fit(x, x.sum(1), batch_size=8, epochs=epochs, initial_epoch=initial, shuffle=False, verbose=0,
              callbacks=[marker, ckpt])  # fmt: skip


def test_a_kill_between_any_two_writes_resumes_to_exactly_the_last_completed_epoch(tmp_path, monkeypatch) -> None:
    first = tmp_path / "after_epoch_1"
    marker = Marker()
    _fit(_model(), first, 1, 0, marker)
    replace = os.replace
    outcomes = []
    for kill_at in range(1, 20):
        run_dir = tmp_path / f"kill{kill_at}"
        shutil.copytree(first, run_dir)
        calls = []

        def faulty(src, dst, calls=calls, kill_at=kill_at):
            calls.append(dst)
            if len(calls) == kill_at:
                raise Killed()
            return replace(src, dst)

        model = load_run_model(run_dir / "weights" / "last.keras")
        monkeypatch.setattr(os, "replace", faulty)
        try:
            _fit(model, run_dir, 2, 1, marker)
            killed = False
        except Killed:
            killed = True
        finally:
            monkeypatch.setattr(os, "replace", replace)

        state = read_state(run_dir)  # what --resume reads
        epoch = state["epoch"]
        assert "staged" not in state and not list(run_dir.rglob("*.next.*"))
        assert len(read_history(run_dir)) == epoch == state["best_epoch"]  # every epoch improves here
        for name in ("last", "best"):
            resumed = _state(load_run_model(run_dir / "weights" / f"{name}.keras"))
            assert len(resumed) == len(marker.states[epoch])
            assert all(np.array_equal(a, b) for a, b in zip(resumed, marker.states[epoch], strict=True)), (
                kill_at,
                name,
            )
        outcomes.append((killed, epoch))
        if not killed:
            break
    # Killed before the commit (state.json) resumes after epoch 1, after it after epoch 2, and the run without
    # a kill wrote no more files than the kills covered.
    assert outcomes[0] == (True, 1) and outcomes[-1] == (False, 2)
    assert {e for k, e in outcomes if k} == {1, 2}
    assert [e for _, e in outcomes] == sorted(e for _, e in outcomes)
