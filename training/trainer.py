"""The training loop shared by every task.

A task contributes a :class:`~training.task.TaskSpec` (how to build its model, loss and metrics,
which metric picks the best epoch, its phases) and its evaluator (:func:`evaluation.tasks.evaluator`);
everything else (data and splits: :mod:`training.data`; strategy and precision; schedule,
checkpoints, resume, cross-validation) is the same code for segmentation, classification and the
joint model.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from config.train import TrainConfig
from core.atomic import write_json
from core.errors import OptionError, StorageError
from data.shift import DESCRIPTION_FILE, describe
from evaluation.base import EvalRequest
from evaluation.diagnosis import DIAGNOSIS_KEYS
from evaluation.external import evaluate_external
from evaluation.run_files import load_run_model
from evaluation.summary import cv_summary
from evaluation.support import few_cases
from evaluation.tasks import evaluator, summary_keys
from models.freeze import set_encoder_trainable
from reports.html import write_report
from reports.provenance import PROVENANCE_FILE, provenance
from training.adapt import load_source
from training.checkpoint import RunCheckpoint, read_history, read_state
from training.data import FoldData, PreparedData, fold_datasets, prepare_data
from training.diagnosis import check_segmenter, diagnose_fold
from training.loop import fit_distributed
from training.strategy import is_chief, make_strategy, resolve_precision, set_precision, strategy_devices
from training.task import EpochScore, Phase, TaskSpec, adapt_phases
from training.tasks import task_spec

UNMASKED_FILE = "unmasked.json"
UNMASKED_WHY = "benign or malignant images without a mask, left out of training and validation (--leave-out-unmasked)"

OnBest = Callable[[keras.Model, TrainConfig, Path], None]
"""Called with a fold's best model, the config and the fold's folder once it is evaluated
(``train.py`` exports the SavedModel there); the fold counts as complete only after it returns."""


def restore_or_build(
    cfg: TrainConfig, fold: int, fold_dir: Path, strategy: tf.distribute.Strategy, state: dict[str, Any] | None
) -> tuple[keras.Model, int]:
    """Step 2: the model of a resumed fold (its last checkpoint) or a new one; and the epochs already done."""
    with strategy.scope():
        if state is None:
            return task_spec(cfg.task).build_model(cfg), 0
        model = load_run_model(fold_dir / "weights" / "last.keras")
    print(f"fold {fold}: resuming after epoch {int(state['epoch'])} of {cfg.epochs}")
    return model, int(state["epoch"])


def run_phases(
    model: keras.Model,
    cfg: TrainConfig,
    fd: FoldData,
    strategy: tf.distribute.Strategy,
    checkpoint: RunCheckpoint,
    initial_epoch: int,
    callbacks: list[keras.callbacks.Callback],
) -> None:
    """Step 3: train the task's phases from ``initial_epoch`` on, stopping early when patience runs out."""
    spec = task_spec(cfg.task)
    loss = spec.loss(cfg, fd.train_records)
    stopped = bool(cfg.patience and checkpoint.wait >= cfg.patience)
    start = 0
    for phase in adapt_phases(cfg) if cfg.adapt else spec.phases(cfg):
        if stopped or phase.end_epoch <= initial_epoch:
            start = phase.end_epoch
            continue
        # A run resumed inside a phase keeps its loaded optimizer; a phase that starts here gets a new one.
        if initial_epoch <= start:
            _compile_phase(model, phase, strategy, fd.lr, fd.steps * (phase.end_epoch - start), cfg, loss, spec)
        # One iterator for the whole phase: the dataset repeats and `steps` batches make an epoch
        # (each pass is one epoch, reshuffled and redrawn). With a new iterator every epoch, freeing the
        # old one waited for tf.data's autotuning thread: 12-17 s at about a third of the epochs (BENCHMARKS.md).
        fit_args = dict(
            validation_data=fd.val_ds,
            epochs=phase.end_epoch,
            initial_epoch=max(initial_epoch, start),
            steps_per_epoch=fd.steps,
            callbacks=callbacks,
            verbose=1 if sys.stdout.isatty() else 2,
        )
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            fit_distributed(model, fd.train_ds.repeat(), strategy=strategy, **fit_args)  # Keras' fit fails here
        else:
            model.fit(fd.train_ds.repeat(), shuffle=False, **fit_args)  # the dataset shuffles itself
        stopped = bool(cfg.patience and checkpoint.wait >= cfg.patience)
        start = phase.end_epoch


def evaluate_best(
    cfg: TrainConfig,
    fd: FoldData,
    fold: int,
    fold_dir: Path,
    checkpoint: RunCheckpoint,
    on_best: OnBest | None,
    data: PreparedData,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Step 4: evaluate the best weights on the validation cases and every external dataset of ``data``, with
    ``--segmenter`` diagnose (:mod:`training.diagnosis`), then ``on_best``.

    Returns:
        The fold's metrics (``external``: each external dataset's main metrics; ``diagnosis``: the diagnosis'
        on each dataset) and the seconds spent evaluating (predictions, metrics, plots), on the external
        datasets, diagnosing and in ``on_best``.
    """
    spec = task_spec(cfg.task)
    t0 = time.perf_counter()
    best = load_run_model(fold_dir / "weights" / "best.keras")
    source = load_source(cfg) if cfg.adapt else None
    request = EvalRequest(fd.val_records, fold_dir, checkpoint.rows, fold_dir=fold_dir, fit=True, source=source)
    result = evaluator(cfg.task)(best, cfg, request)
    note = few_cases(len(fd.val_records))
    if note:
        result["few_cases"] = note
    result.update(
        fold=fold,
        best_epoch=checkpoint.best_epoch,
        epochs_completed=len(checkpoint.rows),
        monitor=spec.monitor,
        train_cases=len(fd.train_records),
        val_cases=len(fd.val_records),
    )
    seconds = {"evaluate": time.perf_counter() - t0}
    if data.externals:
        t0 = time.perf_counter()
        keys = summary_keys(cfg.task)
        result["external"] = evaluate_external(evaluator(cfg.task), best, cfg, fold_dir, data.externals, keys)
        seconds["external"] = time.perf_counter() - t0
    if cfg.segmenter:
        t0 = time.perf_counter()
        result["diagnosis"] = diagnose_fold(cfg, data, fold, fold_dir)
        seconds["diagnosis"] = time.perf_counter() - t0
    if on_best is not None:
        t0 = time.perf_counter()
        on_best(best, cfg, fold_dir)
        seconds["on_best"] = time.perf_counter() - t0
    return result, seconds


def train_fold(
    cfg: TrainConfig,
    data: PreparedData,
    fold: int,
    fold_dir: Path,
    strategy: tf.distribute.Strategy,
    resume: bool = False,
    on_best: OnBest | None = None,
) -> dict[str, Any]:
    """Train (or resume) one fold in ``fold_dir``; evaluate its best weights.

    The steps: :func:`fold_datasets`, :func:`restore_or_build`, :func:`run_phases`,
    :func:`evaluate_best`. ``metrics.json`` is written last, so a fold that has it is complete.

    Returns:
        The fold's metrics (also written to ``fold_dir/metrics.json``), with ``seconds``: where the
        fold's time went (``datasets_and_model``, ``first_epoch``, ``other_epochs``, ``validation``,
        ``checkpoints``, ``evaluate``, ``on_best``).
    """
    metrics_path = fold_dir / "metrics.json"
    if resume and metrics_path.is_file():
        print(f"fold {fold}: already complete, {metrics_path}")
        return json.loads(metrics_path.read_text())
    state = read_state(fold_dir) if resume else None
    chief = is_chief(strategy)
    t0 = time.perf_counter()
    fd = fold_datasets(cfg, data, fold, strategy)
    if chief and not (fold_dir / DESCRIPTION_FILE).is_file():
        train_ids = {r.case_id for r in fd.train_records}
        write_json(fold_dir / DESCRIPTION_FILE, describe(s for s in data.stats if s["id"] in train_ids))
    model, initial_epoch = restore_or_build(cfg, fold, fold_dir, strategy, state)
    spec = task_spec(cfg.task)
    checkpoint = RunCheckpoint(
        fold_dir,
        monitor=spec.monitor,
        mode=spec.mode,
        patience=cfg.patience,
        state=state,
        history=read_history(fold_dir, initial_epoch) if state else None,
        is_chief=chief,
    )
    callbacks: list[keras.callbacks.Callback] = [checkpoint]
    if spec.epoch_score is not None:
        callbacks.insert(0, EpochScore(spec.monitor, spec.epoch_score))
    if chief:
        callbacks.append(keras.callbacks.TensorBoard(str(fold_dir / "tensorboard")))
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_phases(model, cfg, fd, strategy, checkpoint, initial_epoch, callbacks)
    epochs_run = len(checkpoint.rows) - initial_epoch
    if epochs_run:
        print(f"fold {fold}: {epochs_run} epochs in {time.perf_counter() - t0:.0f}s")
    if not chief:
        return {}
    result, seconds = evaluate_best(cfg, fd, fold, fold_dir, checkpoint, on_best, data)
    result["seconds"] = {"datasets_and_model": setup, **epoch_seconds(checkpoint.rows[initial_epoch:]), **seconds}
    print(f"fold {fold}: seconds " + ", ".join(f"{k} {v:.1f}" for k, v in result["seconds"].items()))
    write_json(metrics_path, result)
    print(f"Wrote {write_report(fold_dir)}")
    return result


def epoch_seconds(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """Training time of the first epoch run (tracing, cache filling), of the rest, of validation and checkpoints."""
    if not rows:
        return {}
    train_s = [float(r["train_seconds"]) for r in rows]
    return {
        "first_epoch": train_s[0],
        "other_epochs": sum(train_s[1:]),
        "validation": sum(float(r["epoch_seconds"]) - float(r["train_seconds"]) for r in rows),
        "checkpoints": sum(float(r.get("checkpoint_seconds", 0.0)) for r in rows),
    }


def _compile_phase(
    model: keras.Model,
    phase: Phase,
    strategy: tf.distribute.Strategy,
    lr: float,
    phase_steps: int,
    cfg: TrainConfig,
    loss: keras.losses.Loss,
    spec: TaskSpec,
) -> None:
    """(Re)compile ``model`` for ``phase`` in the strategy scope: trainable backbone, optimizer, schedule."""
    with strategy.scope():
        if phase.backbone_trainable is not None:
            model.get_layer("backbone").trainable = phase.backbone_trainable
            print(f"backbone {'trainable' if phase.backbone_trainable else 'frozen'} until epoch {phase.end_epoch}")
        if phase.encoder_trainable is not None:
            n = set_encoder_trainable(model, phase.encoder_trainable)
            state = "trainable" if phase.encoder_trainable else "frozen (normalization trains)"
            print(f"encoder: {n} layers {state} until epoch {phase.end_epoch}")
        rate = lr * phase.lr_scale
        schedule = (
            keras.optimizers.schedules.CosineDecay(rate, decay_steps=max(1, phase_steps), alpha=0.05)
            if cfg.schedule == "cosine"
            else rate
        )
        model.compile(
            optimizer=keras.optimizers.Adam(schedule),
            loss=loss,
            loss_weights=spec.loss_weights(cfg),
            metrics=spec.metrics(cfg),
        )


def check_writable(folder: Path) -> None:
    """Raise unless ``folder`` can be made and written; creates nothing (a file is written and removed in its
    nearest existing ancestor).

    Raises:
        StorageError: If the nearest existing ancestor is a file, or cannot be written; naming why.
    """
    existing = Path(folder).absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise StorageError(f"cannot write in {folder} ({existing} is a file, not a folder): pass another --project")
    try:
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as e:
        raise StorageError(f"cannot write in {folder} ({e.strerror or e}): pass another --project") from e


def train(
    cfg: TrainConfig,
    run_dir: Path,
    resume: bool = False,
    devices: Sequence[str] | None = None,
    on_best: OnBest | None = None,
) -> dict[str, Any]:
    """Train every fold the config asks for into ``run_dir``.

    Nothing is written into ``run_dir`` before the data and the fold are checked.

    Args:
        cfg: The run's options.
        run_dir: The run folder (created here).
        resume: Continue the run in ``run_dir`` from its last completed epoch.
        devices: Devices for the strategy (default: all local GPUs, or the CPU).
        on_best: Called with each fold's best model once it is evaluated (see :data:`OnBest`).

    Returns:
        The single fold's metrics, or the cross-validation summary for ``fold=-1``.

    Raises:
        ValueError: If ``cfg.fold`` is not a fold of the splits.
    """
    policy = resolve_precision(cfg.mixed_precision)
    set_precision(policy)
    print(f"mixed precision {cfg.mixed_precision!r}: dtype policy {policy}")
    strategy = make_strategy(cfg.strategy, devices)
    check_segmenter(cfg, [cfg.fold] if cfg.fold != -1 else range(cfg.folds))  # before hours of training
    if is_chief(strategy):
        check_writable(run_dir)  # before the data are read; nothing is written before they are checked
    own_splits = run_dir / "splits.json"
    kept = resume and own_splits.is_file()
    data = prepare_data(cfg, own_splits if kept else None)
    n_folds = len(data.splits["folds"])
    if cfg.fold != -1 and not 0 <= cfg.fold < n_folds:
        raise OptionError(f"`--fold` must be 0..{n_folds - 1} or 'all'. Received: fold={cfg.fold}")
    chief = is_chief(strategy)
    if chief and not kept:  # a resumed run keeps the config and splits it was started with
        write_json(run_dir / "config.json", cfg.to_dict())
        write_json(run_dir / "splits.json", data.splits)
        write_json(run_dir / PROVENANCE_FILE, provenance(strategy_devices(strategy)))
        if data.unmasked:
            write_json(run_dir / UNMASKED_FILE, {"n": len(data.unmasked), "ids": data.unmasked, "why": UNMASKED_WHY})
    if cfg.fold != -1:
        return train_fold(cfg, data, cfg.fold, run_dir, strategy, resume, on_best)
    results = []
    for k in range(n_folds):
        results.append(train_fold(cfg, data, k, run_dir / f"fold{k}", strategy, resume, on_best))
        keras.backend.clear_session()
    return summarize_folds(cfg, data, results, run_dir) if chief else {}


def summarize_folds(cfg: TrainConfig, data: PreparedData, results: list[dict[str, Any]], run_dir: Path) -> dict:
    """``cv_summary.json`` of a ``--fold all`` run (internal, each external dataset, each diagnosis) and its report."""
    keys = summary_keys(cfg.task)
    summary = cv_summary(results, keys)
    if data.externals:
        summary["external"] = {
            e.name: cv_summary([r["external"][e.name] for r in results], keys) for e in data.externals
        }
    if cfg.segmenter:
        summary["diagnosis"] = {
            d: cv_summary([r["diagnosis"][d] for r in results], DIAGNOSIS_KEYS) for d in results[0]["diagnosis"]
        }
    write_json(run_dir / "cv_summary.json", summary)
    print(f"Wrote {write_report(run_dir)}")
    return summary
