"""The training loop shared by both tasks.

A task contributes a :class:`TaskSpec` (how to build its model, loss and
metrics, which metric picks the best epoch, how to evaluate); everything else
(data and splits, strategy, precision, schedule, checkpoints, resume,
cross-validation) is the same code for segmentation and classification.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from data.atomic import write_json
from data.discover import Case
from data.report import InspectOptions, analyze_dataset, dataset_out_dir, write_report
from data.sources import resolve_sources
from data.splits import fold_ids, leave_site_out
from pipeline.config import PipelineConfig
from pipeline.dataset import build_dataset, global_batch_size
from training.checkpoint import RunCheckpoint, read_history, read_state
from training.config import TrainConfig
from training.external import ExternalData, evaluate_external, load_externals
from training.loop import fit_distributed
from training.runs import load_run_model
from training.strategy import make_strategy, resolve_precision, set_precision


@dataclass(frozen=True)
class Phase:
    """A stretch of epochs trained with one optimizer.

    Attributes:
        end_epoch: Epochs completed when the phase ends.
        lr_scale: Factor on the run's (replica-scaled) learning rate.
        backbone_trainable: Set the ``"backbone"`` layer's ``trainable`` (None: leave it).
    """

    end_epoch: int
    lr_scale: float = 1.0
    backbone_trainable: bool | None = None


def _single_phase(cfg: TrainConfig) -> list[Phase]:
    return [Phase(cfg.epochs)]


@dataclass(frozen=True)
class TaskSpec:
    """What differs between tasks."""

    monitor: str
    mode: str
    build_model: Callable[[TrainConfig], keras.Model]
    loss: Callable[[TrainConfig, Sequence[Case]], keras.losses.Loss]
    metrics: Callable[[TrainConfig], list[keras.metrics.Metric]]
    evaluate: Callable[..., dict[str, Any]]
    """``(model, records, cfg, out_dir, history, fold_dir=None, fit=False, own_data=True, tta=False)`` -> metrics:
    ``fold_dir`` holds what the run fitted after training (segmentation's lesion gate, classification's
    malignancy cut), ``fit`` fits it on ``records`` first (training's evaluation of the validation fold),
    ``own_data`` False says the records come from another dataset, ``tta`` scores flip test-time
    augmentation (:mod:`training.tta`)."""
    summary_keys: tuple[str, ...]
    phases: Callable[[TrainConfig], list[Phase]] = _single_phase
    loss_weights: Callable[[TrainConfig], dict[str, float] | None] = lambda cfg: None
    """Weights of a multi-output model's losses (``compile(loss_weights=...)``)."""
    epoch_score: Callable[[dict[str, float]], float] | None = None
    """Computes the ``monitor`` value from an epoch's logs when no metric is it (a joint model's
    combined score); :class:`EpochScore` adds it to the logs before the checkpoint reads them."""


class EpochScore(keras.callbacks.Callback):
    """Adds ``name`` = ``score(logs)`` to every epoch's logs (run before the checkpoint callback)."""

    def __init__(self, name: str, score: Callable[[dict[str, float]], float]) -> None:
        super().__init__()
        self.name, self.score = name, score

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        if logs is not None:
            logs[self.name] = float(self.score(logs))


def task_spec(task: str) -> TaskSpec:
    """The :class:`TaskSpec` of ``task``.

    Raises:
        ValueError: If the task has no training support yet.
    """
    if task == "seg":
        from training.seg import SEG_SPEC

        return SEG_SPEC
    if task == "cls":
        from training.cls import CLS_SPEC

        return CLS_SPEC
    if task == "joint":
        from training.joint import JOINT_SPEC

        return JOINT_SPEC
    raise ValueError(f"`task` must be 'seg', 'cls' or 'joint'. Received: {task!r}")


@dataclass
class PreparedData:
    """Cases and the splits a run uses, and the external datasets it is scored on."""

    cases: dict[str, Case]
    splits: dict[str, Any]
    externals: list[ExternalData] = field(default_factory=list)


def prepare_data(cfg: TrainConfig) -> PreparedData:
    """Find and validate the data (and every ``--external`` dataset), and make (or reuse, or read) the splits.

    The splits live with the dataset's report in ``<project>/data/<dataset>/`` and
    are made once; ``cfg.splits`` names a user's own file instead. With ``cfg.holdout_site``
    the run's splits are one fold: every other site trains, that site validates
    (:func:`data.splits.leave_site_out`).
    """
    sources = resolve_sources(cfg.data_dir)
    out = dataset_out_dir(sources, cfg.project)
    analysis = analyze_dataset(
        sources,
        InspectOptions(folds=cfg.folds),
        splits_file=cfg.splits or None,
        existing_splits=None if cfg.splits else out / "splits.json",
    )
    if analysis.splits_source == "new":
        write_report(analysis, out)
        print(f"Wrote the dataset report and splits to {out}")
    splits = analysis.splits
    if cfg.holdout_site:
        splits = leave_site_out(splits, analysis.sites, analysis.groups, cfg.holdout_site)
        if splits["dropped"]:
            print(
                f"site {cfg.holdout_site} held out: {len(splits['dropped'])} training case(s) of other sites "
                f"left out, duplicates of (or grouped with) held-out cases, e.g. {splits['dropped'][:3]}"
            )
    return PreparedData(analysis.cases, splits, load_externals(cfg.external, cfg.classes))


def fold_records(data: PreparedData, cfg: TrainConfig, fold: int) -> tuple[list[Case], list[Case]]:
    """Train and validation cases of ``fold``, limited to ``cfg.classes`` and ``cfg.max_samples``."""
    train_ids, val_ids = fold_ids(data.splits, fold)

    def pick(ids: list[str]) -> list[Case]:
        cases = [data.cases[i] for i in ids if data.cases[i].label in cfg.classes]
        return cases[: cfg.max_samples] if cfg.max_samples else cases

    train, val = pick(train_ids), pick(val_ids)
    if not train or not val:
        raise ValueError(
            f"fold {fold} has {len(train)} training and {len(val)} validation cases of classes "
            f"{list(cfg.classes)}; both must be non-empty"
        )
    return train, val


def eval_batch_plan(n: int, replicas: int, max_per_replica: int) -> tuple[int, bool]:
    """Per-replica batch for evaluating ``n`` cases on ``replicas`` replicas without empty replicas.

    Keras 3.15 builds a distributed model from the first batch reduced across
    replicas (it must split evenly), and TensorFlow's CPU convolutions fail on a
    replica given an empty batch. So the first batch must be full and the last one
    must hold no fewer cases than replicas. Picks the largest batch up to
    ``max_per_replica`` that allows this, else drops the remainder.

    Returns:
        ``(per_replica_batch, drop_remainder)``.
    """
    if replicas == 1:
        return max(1, min(max_per_replica, n)), False
    top = max(1, min(max_per_replica, n // replicas))
    for b in range(top, 0, -1):
        rest = n % (b * replicas)
        if rest == 0 or rest >= replicas:
            return b, False
    return top, True


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True unless this process is a non-chief worker of a multi-worker run."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


OnBest = Callable[[keras.Model, TrainConfig, Path], None]
"""Called with a fold's best model, the config and the fold's folder once it is evaluated
(``train.py`` exports the SavedModel there); the fold counts as complete only after it returns."""


@dataclass
class FoldData:
    """One fold's cases and datasets, and the batch arithmetic of its strategy."""

    train_records: list[Case]
    val_records: list[Case]
    train_ds: tf.data.Dataset
    val_ds: tf.data.Dataset
    steps: int
    lr: float


def fold_datasets(cfg: TrainConfig, data: PreparedData, fold: int, strategy: tf.distribute.Strategy) -> FoldData:
    """Step 1 of a fold: its cases, the training and validation datasets, steps per epoch and learning rate."""
    train_records, val_records = fold_records(data, cfg, fold)
    pcfg = PipelineConfig(
        img_size=cfg.img_size,
        channels=cfg.channels,
        batch_size=cfg.batch_size,
        augment=cfg.augment,
        seed=cfg.seed,
        oversample=cfg.oversample,
    )
    replicas = strategy.num_replicas_in_sync
    batch = global_batch_size(pcfg, strategy)
    steps = max(1, len(train_records) // batch)
    lr = cfg.lr * replicas  # linear scaling rule: the global batch grows with the replicas
    print(
        f"fold {fold}: {len(train_records)} train / {len(val_records)} val cases, "
        f"{replicas} replica(s), global batch {batch}, lr {lr:g}, {steps} steps/epoch"
    )
    train_ds = build_dataset(train_records, cfg.task, pcfg, training=True, strategy=strategy)
    val_per_replica, val_drop = eval_batch_plan(len(val_records), replicas, cfg.batch_size)
    if val_drop:
        print(
            f"fold {fold}: in-training validation skips {len(val_records) % (val_per_replica * replicas)} "
            "case(s) so no replica gets an empty batch; the final metrics use every case"
        )
    val_cfg = PipelineConfig(**{**pcfg.__dict__, "batch_size": val_per_replica})
    val_ds = build_dataset(val_records, cfg.task, val_cfg, training=False, strategy=strategy, drop_remainder=val_drop)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        opts = tf.data.Options()
        opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        train_ds, val_ds = train_ds.with_options(opts), val_ds.with_options(opts)
    return FoldData(train_records, val_records, train_ds, val_ds, steps, lr)


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
    for phase in spec.phases(cfg):
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
    externals: Sequence[ExternalData] = (),
) -> tuple[dict[str, Any], dict[str, float]]:
    """Step 4: evaluate the best weights on the validation cases and every external dataset, then ``on_best``.

    Returns:
        The fold's metrics (``external``: each external dataset's main metrics) and the seconds spent
        evaluating (predictions, metrics, plots), on the external datasets and in ``on_best``.
    """
    spec = task_spec(cfg.task)
    t0 = time.perf_counter()
    best = load_run_model(fold_dir / "weights" / "best.keras")
    result = spec.evaluate(best, fd.val_records, cfg, fold_dir, checkpoint.rows, fold_dir=fold_dir, fit=True)
    result.update(
        fold=fold,
        best_epoch=checkpoint.best_epoch,
        epochs_completed=len(checkpoint.rows),
        monitor=spec.monitor,
        train_cases=len(fd.train_records),
        val_cases=len(fd.val_records),
    )
    seconds = {"evaluate": time.perf_counter() - t0}
    if externals:
        t0 = time.perf_counter()
        result["external"] = evaluate_external(spec.evaluate, best, cfg, fold_dir, externals, spec.summary_keys)
        seconds["external"] = time.perf_counter() - t0
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
    result, seconds = evaluate_best(cfg, fd, fold, fold_dir, checkpoint, on_best, data.externals)
    result["seconds"] = {"datasets_and_model": setup, **epoch_seconds(checkpoint.rows[initial_epoch:]), **seconds}
    print(f"fold {fold}: seconds " + ", ".join(f"{k} {v:.1f}" for k, v in result["seconds"].items()))
    write_json(metrics_path, result)
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


def cv_summary(results: list[dict[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    """Mean, standard deviation and 95% bootstrap CI over folds of each metric."""
    from reports.stats import bootstrap_ci

    out: dict[str, Any] = {"folds": len(results)}
    for k in keys:
        if any(r.get(k) is None for r in results):  # e.g. normal images' share on folds without normals
            continue
        vals = np.array([r[k] for r in results], dtype=float)
        lo, hi = bootstrap_ci(vals)
        out[k] = {
            "mean": float(vals.mean()),
            "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
            "ci95": [lo, hi],
            "per_fold": vals.tolist(),
        }
    return out


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
    data = prepare_data(cfg)
    n_folds = len(data.splits["folds"])
    if cfg.fold != -1 and not 0 <= cfg.fold < n_folds:
        raise ValueError(f"`--fold` must be 0..{n_folds - 1} or 'all'. Received: fold={cfg.fold}")
    chief = is_chief(strategy)
    if chief:
        write_json(run_dir / "config.json", cfg.to_dict())
        write_json(run_dir / "splits.json", data.splits)
    if cfg.fold != -1:
        return train_fold(cfg, data, cfg.fold, run_dir, strategy, resume, on_best)
    results = []
    for k in range(n_folds):
        results.append(train_fold(cfg, data, k, run_dir / f"fold{k}", strategy, resume, on_best))
        keras.backend.clear_session()
    if not chief:
        return {}
    keys = task_spec(cfg.task).summary_keys
    summary = cv_summary(results, keys)
    if data.externals:
        summary["external"] = {
            e.name: cv_summary([r["external"][e.name] for r in results], keys) for e in data.externals
        }
    write_json(run_dir / "cv_summary.json", summary)
    return summary


def format_metrics(result: dict[str, Any], keys: Sequence[str]) -> str:
    """One line of the main metrics, with CIs when present."""
    parts = []
    for k in keys:
        v = result.get(k)
        if isinstance(v, dict):
            parts.append(f"{k} {v['mean']:.4f} +- {v['std']:.4f} (95% CI {v['ci95'][0]:.4f}-{v['ci95'][1]:.4f})")
        elif isinstance(v, float) and not math.isnan(v):
            ci = result.get(f"{k}_ci95")
            parts.append(f"{k} {v:.4f}" + (f" (95% CI {ci[0]:.4f}-{ci[1]:.4f})" if ci else ""))
    return ", ".join(parts)
