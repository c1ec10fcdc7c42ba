"""A run's data: its cases and splits, each fold's cases, and the fold's tf.data datasets for a strategy."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tensorflow as tf

from config.train import TrainConfig
from core.errors import OptionError
from data.discover import Case, check_lesion_masks
from data.report import InspectOptions, analyze_dataset, dataset_out_dir, write_report
from data.sources import resolve_sources
from data.splits import fold_ids, leave_site_out
from evaluation.external import ExternalData, load_externals
from pipeline.dataset import build_dataset, global_batch_size


@dataclass
class PreparedData:
    """Cases and the splits a run uses, and the external datasets it is scored on."""

    cases: dict[str, Case]
    splits: dict[str, Any]
    externals: list[ExternalData] = field(default_factory=list)
    unmasked: list[str] = field(default_factory=list)
    """Lesion images left out for having no mask (``--leave-out-unmasked``, segmentation and joint)."""
    stats: list[dict[str, Any]] = field(default_factory=list)
    """Each case's statistics from the dataset's scan (:mod:`data.shift` describes the training images')."""


def prepare_data(cfg: TrainConfig, run_splits: Path | None = None) -> PreparedData:
    """Find and validate the data (and every ``--external`` dataset), and make (or reuse, or read) the splits.

    The splits live with the dataset's report in ``<project>/data/<dataset>/`` and
    are made once; ``cfg.splits`` names a user's own file instead. With ``cfg.holdout_site``
    the run's splits are one fold: every other site trains, that site validates
    (:func:`data.splits.leave_site_out`). ``run_splits`` (a resumed run's own ``splits.json``)
    is used as it is, checked against the data, whatever the dataset's shared splits say now.
    """
    sources = resolve_sources(cfg.data_dir)
    out = dataset_out_dir(sources, cfg.project)
    analysis = analyze_dataset(
        sources,
        InspectOptions(folds=cfg.folds),
        splits_file=run_splits or cfg.splits or None,
        existing_splits=None if run_splits or cfg.splits else out / "splits.json",
    )
    if analysis.splits_source == "new":
        write_report(analysis, out)
        print(f"Wrote the dataset report and splits to {out}")
    splits = analysis.splits
    if cfg.holdout_site and run_splits is None:
        splits = leave_site_out(splits, analysis.sites, analysis.groups, cfg.holdout_site)
        if splits["dropped"]:
            print(
                f"site {cfg.holdout_site} held out: {len(splits['dropped'])} training case(s) of other sites "
                f"left out, duplicates of (or grouped with) held-out cases, e.g. {splits['dropped'][:3]}"
            )
    in_classes = [c for c in analysis.cases.values() if c.label in cfg.classes]
    where = " ".join(str(s.path) for s in sources)
    _, unmasked = check_lesion_masks(in_classes, cfg.task, cfg.leave_out_unmasked, where, cfg.crop)
    if unmasked:
        print(f"left out {len(unmasked)} lesion image(s) without a mask (--leave-out-unmasked), e.g. {unmasked[:3]}")
    externals = load_externals(cfg.external, cfg.classes, cfg.task, cfg.leave_out_unmasked, cfg.crop)
    stats = analysis.scan.stats.to_dict("records")
    return PreparedData(analysis.cases, splits, externals, unmasked, stats)


def fold_records(data: PreparedData, cfg: TrainConfig, fold: int) -> tuple[list[Case], list[Case]]:
    """Train and validation cases of ``fold``, limited to ``cfg.classes`` and ``cfg.max_samples``, less the
    lesion images left out for having no mask."""
    train_ids, val_ids = fold_ids(data.splits, fold)
    unmasked = set(data.unmasked)

    def pick(ids: list[str]) -> list[Case]:
        cases = [data.cases[i] for i in ids if data.cases[i].label in cfg.classes and i not in unmasked]
        return cases[: cfg.max_samples] if cfg.max_samples else cases

    train, val = pick(train_ids), pick(val_ids)
    if not train or not val:
        raise OptionError(
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
    pcfg = cfg.pipeline()
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
    val_cfg = cfg.pipeline(batch_size=val_per_replica)
    val_ds = build_dataset(val_records, cfg.task, val_cfg, training=False, strategy=strategy, drop_remainder=val_drop)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        opts = tf.data.Options()
        opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        train_ds, val_ds = train_ds.with_options(opts), val_ds.with_options(opts)
    return FoldData(train_records, val_records, train_ds, val_ds, steps, lr)
