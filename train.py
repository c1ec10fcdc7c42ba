"""Train a breast ultrasound model: lesion segmentation or normal/benign/malignant classification.

Usage:
    python train.py --task seg
    python train.py --task cls
    python train.py --task cls --model resnet50_se --loss weighted_ce --img-size 224 --batch-size 16
    python train.py --task cls --weights imagenet --freeze-epochs 3
    python train.py --task seg --model resunet --img-size 128 --epochs 30
    python train.py --task seg --data-dir ../shared/datasets/Dataset_BUSI_with_GT --classes benign malignant
    python train.py --task seg --fold all --name cv
    python train.py --resume runs/seg/exp

Every run writes runs/<task>/<name>/ (name incremented, never overwritten):
config.json, splits.json, weights/best.keras and last.keras, history.csv,
metrics.json, plots/, tensorboard/ and saved_model/ (best weights).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data.classes import CLASS_NAMES
from data.errors import exit_on_user_error, with_overrides
from training.config import MIXED_PRECISION, STRATEGIES, TrainConfig
from training.runs import increment_run_dir

DEFAULTS = TrainConfig()


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (kebab-case flags, help on each)."""
    from losses.classification import CLS_LOSSES
    from losses.segmentation import SEG_LOSSES
    from models.registry import model_names
    from pipeline.augment import PRESETS

    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    p.add_argument("--task", choices=["seg", "cls"], default="seg", help="seg: lesion segmentation; cls: 3 classes")
    p.add_argument(
        "--model",
        choices=model_names(),
        default="",
        help=f"seg: {', '.join(model_names('seg'))} (default unet); "
        f"cls: {', '.join(model_names('cls'))} (default efficientnet_b0)",
    )
    p.add_argument(
        "--data-dir",
        default="",
        help="BUSI-layout folder or manifest .csv (default: built-in synthetic data)",
    )
    p.add_argument("--splits", default="", help="splits JSON to use (default: the dataset's own, made once)")
    p.add_argument("--fold", default="0", help="fold index, or 'all' for cross-validation (default 0)")
    p.add_argument("--img-size", type=int, default=DEFAULTS.img_size, help="side of the square model input")
    p.add_argument("--epochs", type=int, default=DEFAULTS.epochs, help="number of epochs")
    p.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="batch size per replica")
    p.add_argument(
        "--lr",
        type=float,
        default=DEFAULTS.lr,
        help="learning rate for one replica's batch; scaled linearly with replicas",
    )
    p.add_argument(
        "--loss",
        choices=[*SEG_LOSSES, *CLS_LOSSES],
        default="",
        help=f"seg: {', '.join(SEG_LOSSES)} (default bce_dice); cls: {', '.join(CLS_LOSSES)} (default ce, with "
        "--oversample; focal and weighted_ce weight by the training split's class frequencies)",
    )
    p.add_argument(
        "--weights",
        default=DEFAULTS.weights,
        help="cls: none (random init), imagenet (downloads; frozen backbone for --freeze-epochs, then all "
        "layers at lr/10), or a .keras / .weights.h5 file of the same model",
    )
    p.add_argument(
        "--freeze-epochs",
        type=int,
        default=DEFAULTS.freeze_epochs,
        help="cls with --weights imagenet: epochs with the backbone frozen",
    )
    p.add_argument("--gamma", type=float, default=DEFAULTS.gamma, help="cls: focal loss gamma")
    p.add_argument("--label-smoothing", type=float, default=DEFAULTS.label_smoothing, help="cls: label smoothing")
    p.add_argument(
        "--oversample",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="cls: draw the classes equally often in training (default: on with --loss ce, off with the "
        "weighted losses)",
    )
    p.add_argument("--augment", choices=list(PRESETS), default=DEFAULTS.augment, help="augmentation preset")
    p.add_argument(
        "--mixed-precision",
        choices=MIXED_PRECISION,
        default=DEFAULTS.mixed_precision,
        help="auto: bf16 on GPUs >= 8.0, fp16 on older GPUs, off on CPU",
    )
    p.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default=DEFAULTS.strategy,
        help="auto/mirrored: all local GPUs (or the CPU); "
        "multiworker: MultiWorkerMirroredStrategy over the machines in TF_CONFIG (same command on each)",
    )
    p.add_argument(
        "--classes",
        nargs="+",
        choices=CLASS_NAMES,
        default=list(DEFAULTS.classes),
        help="classes to train and validate on (default all three)",
    )
    p.add_argument(
        "--patience",
        type=int,
        default=DEFAULTS.patience,
        help="early-stopping patience in epochs (0: off)",
    )
    p.add_argument("--base-filters", type=int, default=DEFAULTS.base_filters, help="seg: filters of the first level")
    p.add_argument(
        "--depth",
        type=int,
        default=DEFAULTS.depth,
        help="seg: down-sampling steps; --img-size must be a multiple of 2**depth",
    )
    p.add_argument(
        "--norm",
        choices=["instance", "batch"],
        default=DEFAULTS.norm,
        help="seg: instance norm (default) or synchronized batch norm after each convolution",
    )
    p.add_argument(
        "--schedule",
        choices=["cosine", "constant"],
        default=DEFAULTS.schedule,
        help="learning-rate schedule: cosine decay to 5%% over the run, or constant",
    )
    p.add_argument(
        "--dropout",
        type=float,
        default=DEFAULTS.dropout,
        help="seg: spatial dropout in the deepest levels; cls: dropout before the last layer (0: off)",
    )
    p.add_argument("--project", default=DEFAULTS.project, help="root folder of runs")
    p.add_argument("--name", default=DEFAULTS.name, help="run name (incremented if taken)")
    p.add_argument("--exist-ok", action="store_true", help="reuse runs/<task>/<name> instead of incrementing")
    p.add_argument("--resume", default="", help="run folder to continue from its last completed epoch")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed, help="seed of shuffling, augmentation and init")
    p.add_argument("--max-samples", type=int, default=0, help="debug: use at most this many cases per split")
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` (default: the command line)."""
    return build_parser().parse_args(argv)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Turn parsed flags into the run's frozen config."""
    fold = args.fold.strip().lower()
    if fold != "all" and not fold.lstrip("-").isdigit():
        raise ValueError(f"`--fold` must be a fold index or 'all'. Received: --fold {args.fold}")
    return TrainConfig(
        task=args.task,
        model=args.model,
        data_dir=args.data_dir,
        splits=args.splits,
        fold=-1 if fold == "all" else int(fold),
        img_size=args.img_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        loss=args.loss,
        augment=args.augment,
        mixed_precision=args.mixed_precision,
        strategy=args.strategy,
        project=args.project,
        name=args.name,
        seed=args.seed,
        max_samples=args.max_samples,
        classes=tuple(args.classes),
        patience=args.patience,
        base_filters=args.base_filters,
        depth=args.depth,
        norm=args.norm,
        dropout=args.dropout,
        schedule=args.schedule,
        weights=args.weights,
        freeze_epochs=args.freeze_epochs,
        gamma=args.gamma,
        label_smoothing=args.label_smoothing,
        oversample=args.oversample,
    )


def main(args: argparse.Namespace, devices: Sequence[str] | None = None) -> dict[str, Any]:
    """Train as ``args`` say; return the metrics (or the cross-validation summary)."""
    import keras

    from training.trainer import format_metrics, task_spec, train

    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "config.json").is_file():
            raise FileNotFoundError(f"`--resume` must be a run folder with config.json. Received: {run_dir}")
        cfg = TrainConfig.load(run_dir / "config.json")
    else:
        cfg = config_from_args(args)
        run_dir = Path(cfg.project) / cfg.task / cfg.name
        # Workers of a multi-worker run must agree on the folder, so it is not incremented.
        if not args.exist_ok and cfg.strategy != "multiworker":
            run_dir = increment_run_dir(cfg.project, cfg.task, cfg.name)
    keras.utils.set_random_seed(cfg.seed)
    print("train: " + " ".join(f"{k}={v}" for k, v in cfg.to_dict().items()))
    print(f"run folder: {run_dir}")
    if cfg.task == "cls" and cfg.oversample and cfg.loss != "ce":
        print(f"note: --oversample with --loss {cfg.loss} corrects the class imbalance twice", file=sys.stderr)
    result = train(cfg, run_dir, resume=bool(args.resume), devices=devices)
    if result:
        print(f"Results: {format_metrics(result, task_spec(cfg.task).summary_keys)}")
        print(f"Wrote {run_dir}: config.json, splits.json, weights/, history.csv, metrics.json, plots/, saved_model/")
    result["run_dir"] = str(run_dir)
    return result


def run(devices: Sequence[str] | None = None, **overrides: Any) -> dict[str, Any]:
    """Train from Python, e.g. ``run(task="seg", epochs=1, max_samples=8)``; flags' defaults apply."""
    if "fold" in overrides:
        overrides["fold"] = str(overrides["fold"])
    return main(with_overrides(parse_args([]), overrides), devices=devices)


if __name__ == "__main__":
    sys.exit(exit_on_user_error(lambda: main(parse_args())))
