"""Checkpoints, history and early stopping that survive a killed process.

After every epoch the callback commits the epoch: it writes, each atomically (temporary
name, then rename), the staged ``weights/last.next.keras`` (model and optimizer state),
``weights/best.next.keras`` when the monitored metric improved and ``history.next.csv``;
then ``state.json``, which records the completed epoch and the staged files (the commit);
then moves the staged files into place. :func:`read_state`, which ``--resume`` calls, finishes
an interrupted commit or discards an uncommitted one, so a process killed at any moment
resumes at exactly its last completed epoch.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import keras

from core.atomic import atomic_write, write_json, write_text
from core.errors import StorageError

STATE_NAME = "state.json"
HISTORY_NAME = "history.csv"


def save_model_atomic(model: keras.Model, path: Path) -> None:
    """Save ``model`` as ``.keras`` under a temporary name, then rename it onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")  # keras wants the suffix
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


STAGED = "staged"
"""``state.json``'s list of the files an epoch's commit still has to move into place."""


def staged_name(path: Path) -> Path:
    """Where an epoch's new version of ``path`` is written before the commit (``last.keras`` -> ``last.next.keras``)."""
    return path.with_name(f"{path.stem}.next{path.suffix}")


def _promote(run_dir: Path, targets: list[str]) -> None:
    for rel in targets:
        target = run_dir / rel
        if staged_name(target).is_file():
            os.replace(staged_name(target), target)


def read_state(run_dir: Path) -> dict[str, Any] | None:
    """The training state of the last completed epoch of a run folder, or None if no epoch completed.

    Brings the folder to exactly that epoch first (:class:`RunCheckpoint` commits an epoch by writing
    ``state.json``): a commit that was interrupted while moving the epoch's files into place is finished,
    and files staged by an epoch that never committed are removed.
    """
    run_dir = Path(run_dir)
    p = run_dir / STATE_NAME
    state = json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None
    if state is not None and state.get(STAGED):
        _promote(run_dir, state[STAGED])
        state = {k: v for k, v in state.items() if k != STAGED}
        write_json(p, state)
    for stale in [*run_dir.glob("*.next.*"), *(run_dir / "weights").glob("*.next.*")]:
        stale.unlink()
    return state


def read_history(run_dir: Path, epochs: int | None = None) -> list[dict[str, float]]:
    """Rows of ``history.csv`` (the first ``epochs`` of them when given)."""
    p = Path(run_dir) / HISTORY_NAME
    if not p.is_file():
        return []
    with open(p, newline="", encoding="utf-8") as f:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    return rows if epochs is None else rows[:epochs]


class RunCheckpoint(keras.callbacks.Callback):
    """Per-epoch checkpoints, history, state and early stopping for one run folder.

    Args:
        run_dir: The run (or fold) folder.
        monitor: Metric deciding the best epoch, e.g. ``"val_dice"``.
        mode: ``"max"`` or ``"min"``.
        patience: Epochs without improvement before training stops (0 disables).
        state: State read back on resume (None for a new run).
        history: History rows read back on resume.
        is_chief: Only the chief writes into ``run_dir``; other workers of a
            multi-worker run still save (saving is collective) into a temporary folder.
    """

    def __init__(
        self,
        run_dir: Path,
        monitor: str,
        mode: str = "max",
        patience: int = 10,
        state: dict[str, Any] | None = None,
        history: list[dict[str, float]] | None = None,
        is_chief: bool = True,
    ) -> None:
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"`mode` must be 'max' or 'min'. Received: mode={mode!r}")
        self.run_dir = Path(run_dir)
        self.monitor, self.mode, self.patience = monitor, mode, patience
        state = state or {}
        self.best = state.get("best", -math.inf if mode == "max" else math.inf)
        self.best_epoch = state.get("best_epoch", 0)
        self.wait = state.get("wait", 0)
        self.rows: list[dict[str, float]] = list(history or [])
        self.is_chief = is_chief

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self._t_epoch = time.perf_counter()
        self._t_val: float | None = None

    def on_test_begin(self, logs: dict[str, float] | None = None) -> None:
        if getattr(self, "_t_val", 0) is None:  # validation inside fit: the training part is over
            self._t_val = time.perf_counter()

    def _improved(self, value: float) -> bool:
        return value > self.best if self.mode == "max" else value < self.best

    def _lr(self) -> float:
        lr = self.model.optimizer.learning_rate
        return float(keras.ops.convert_to_numpy(lr))

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        logs = dict(logs or {})
        if self.monitor not in logs:
            raise KeyError(f"monitored metric {self.monitor!r} is not in the epoch logs {sorted(logs)}")
        value = float(logs[self.monitor])
        done = epoch + 1
        improved = self._improved(value)
        if improved:
            self.best, self.best_epoch, self.wait = value, done, 0
        else:
            self.wait += 1
        now = time.perf_counter()
        t0 = getattr(self, "_t_epoch", now)
        t_val = getattr(self, "_t_val", None) or now
        timing = {"epoch_seconds": now - t0, "train_seconds": t_val - t0}
        self.rows.append({"epoch": done, **{k: float(v) for k, v in logs.items()}, "lr": self._lr(), **timing})
        if self.is_chief:
            try:
                self._commit(done, improved, now)
            except OSError as e:
                last = done - 1
                raise StorageError(
                    f"could not write epoch {done}'s checkpoint in {self.run_dir} ({e.strerror or e}); the run is "
                    f"intact after epoch {last}: make room, then train.py --resume {self.run_dir}"
                ) from e
        else:
            tmp = Path(tempfile.mkdtemp(prefix="worker_ckpt_"))
            try:
                self.model.save(tmp / "last.keras")
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        if self.patience and self.wait >= self.patience:
            print(
                f"Early stopping: {self.monitor} has not improved for {self.patience} epochs "
                f"(best {self.best:.4f} at epoch {self.best_epoch})"
            )
            self.model.stop_training = True

    def _commit(self, done: int, improved: bool, t0: float) -> None:
        """Write the epoch's checkpoint so that a kill at any instant resumes to exactly one completed epoch.

        The new last (and best) weights and history go to staged names; ``state.json``, written atomically
        with the list of staged files, commits the epoch; then the files are moved into place and the list
        cleared. :func:`read_state` finishes or discards whatever a kill interrupted.
        """
        weights = self.run_dir / "weights"
        last, best, history = weights / "last.keras", weights / "best.keras", self.run_dir / HISTORY_NAME
        save_model_atomic(self.model, staged_name(last))
        targets = [last, history]
        if improved:
            atomic_write(staged_name(best), lambda p: shutil.copyfile(staged_name(last), p))
            targets.insert(1, best)
        self.rows[-1]["checkpoint_seconds"] = time.perf_counter() - t0
        write_text(staged_name(history), self._history_csv())
        state = {
            "epoch": done,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "monitor": self.monitor,
            "mode": self.mode,
        }
        rel = [str(t.relative_to(self.run_dir)) for t in targets]
        write_json(self.run_dir / STATE_NAME, {**state, STAGED: rel})  # the commit
        _promote(self.run_dir, rel)
        write_json(self.run_dir / STATE_NAME, state)

    def _history_csv(self) -> str:
        keys: list[str] = []
        for row in self.rows:
            keys.extend(k for k in row if k not in keys)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(self.rows)
        return buf.getvalue()
