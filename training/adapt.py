"""Adapting a trained run to a new site's data (``train.py --adapt RUN``).

The adapted run takes its source run's architecture and best weights, and trains on the new data
with the few-patient recipe: the encoder frozen but its normalization training for ``--freeze-epochs``,
then every layer at a tenth of the rate (:func:`training.task.adapt_phases`), early stopping on the
new data's patient-grouped validation fold. Its rules (lesion gate, temperature, malignancy cut) are
fitted on that fold only where it can support them, else with the source's validation fold, else
kept from the source (:mod:`evaluation.adapted`, :mod:`evaluation.support`).
"""

from __future__ import annotations

from dataclasses import fields, replace

from config.train import TrainConfig
from core.errors import DataError, MissingFileError, OptionError
from data.discover import check_lesion_masks
from data.sources import discover_sources, resolve_sources
from data.splits import fold_ids, load_splits
from evaluation.adapted import SourceRun
from evaluation.run_files import resolve_run

ARCHITECTURE = (
    "task", "model", "img_size", "channels", "base_filters", "depth", "norm", "presence_head", "input_norm",
    "patch_size", "num_layers", "drop_path",
)  # fmt: skip
"""What an adapted run takes from its source run: the model as it was built."""
RESOLVED = ("loss", "lr", "oversample")
"""Fields whose default depends on the task and model: resolved again for the source's unless set."""


def flag(name: str) -> str:
    """``img_size`` -> ``--img-size``."""
    return "--" + name.replace("_", "-")


def adapt_config(cfg: TrainConfig, explicit: set[str]) -> TrainConfig:
    """``cfg`` with its source run's architecture and best weights (``cfg.adapt`` becomes that fold's folder).

    Args:
        cfg: The config from the flags.
        explicit: The config fields the user set on the command line.

    Raises:
        OptionError: If a flag sets the architecture otherwise than the source run, ``--weights`` is given,
            or the source is a lesion classifier (its crops are not adapted yet).
        MissingFileError: If ``--adapt`` is not a run (or a fold of one) with best weights.
    """
    source_cfg, weights = resolve_run(cfg.adapt)
    clash = [f"{flag(k)} {getattr(cfg, k)} (the run's: {getattr(source_cfg, k)})" for k in ARCHITECTURE
             if k in explicit and getattr(cfg, k) != getattr(source_cfg, k)]  # fmt: skip
    if clash:
        raise OptionError(f"`--adapt {cfg.adapt}` keeps the run's architecture; drop {', '.join(clash)}")
    if "weights" in explicit:
        raise OptionError(f"`--adapt` starts from {weights}; drop --weights {cfg.weights}")
    if source_cfg.crop != "frame":
        raise OptionError(f"`--adapt` takes runs that read whole images; {cfg.adapt} is a lesion classifier")
    changes = {k: getattr(source_cfg, k) for k in ARCHITECTURE}
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    changes.update({k: defaults[k] for k in RESOLVED if k not in explicit})
    return replace(cfg, **changes, weights=str(weights), adapt=str(weights.parent.parent.resolve()))


def load_source(cfg: TrainConfig) -> SourceRun:
    """The source run of an adapted run and its validation cases (none, with a note, when its data are gone)."""
    source_cfg, weights = resolve_run(cfg.adapt)
    fold_dir = weights.parent.parent
    run_dir = fold_dir if (fold_dir / "config.json").is_file() else fold_dir.parent
    fold = source_cfg.fold if source_cfg.fold != -1 else int(fold_dir.name.removeprefix("fold"))
    try:
        cases = discover_sources(resolve_sources(source_cfg.data_dir))
        ids = fold_ids(load_splits(run_dir / "splits.json"), fold)[1]
        records = [cases[i] for i in ids if i in cases and cases[i].label in source_cfg.classes]
        where = " ".join(source_cfg.data_dir) or "the synthetic data"
        records, _ = check_lesion_masks(records, source_cfg.task, source_cfg.leave_out_unmasked, where, source_cfg.crop)
    except (DataError, MissingFileError, OSError) as e:
        print(f"note: {fold_dir}'s validation data are not readable ({e}); rules this run cannot fit are kept")
        return SourceRun(fold_dir)
    if source_cfg.max_samples:
        records = records[: source_cfg.max_samples]
    return SourceRun(fold_dir, records)
