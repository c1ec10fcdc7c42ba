"""Train a breast ultrasound model: lesion segmentation or normal/benign/malignant classification.

Usage:
    python train.py --task seg
    python train.py --task cls
    python train.py --task cls --model resnet50_se --loss weighted_ce --img-size 224 --batch-size 16
    python train.py --task cls --weights imagenet --freeze-epochs 3
    python train.py --task seg --model resunet --img-size 128 --epochs 30
    python train.py --task seg --data-dir ../shared/datasets/Dataset_BUSI_with_GT --classes benign malignant
    python train.py --task seg --fold all --name cv
    python train.py --task joint --model efficientnet_b0_unet --cls-weight 0.5 --consistency 1
    python train.py --task seg --model segformer_b0 --weights segformer_b0_ade20k_512
    python train.py --task cls --model deit_tiny --img-size 224 --weights deit_tiny_distilled_patch16_224_imagenet
    python train.py --task cls --data-dir ../shared/datasets/Dataset_BUSI_with_GT \
        --external ../shared/datasets/BUS-BRA/manifest.csv
    python train.py --task seg --data-dir busi=../shared/datasets/Dataset_BUSI_with_GT \
        bra=../shared/datasets/BUS-BRA/manifest.csv --fold site:bra
    python train.py --task seg --data-dir my_hospital/ --weights runs/seg/exp/weights/best.keras
    python train.py --resume runs/seg/exp

Every run writes runs/<task>/<name>/ (name incremented, never overwritten):
config.json, splits.json, weights/best.keras and last.keras, history.csv,
metrics.json, plots/, tensorboard/, saved_model/ (best weights; --no-export
skips it) and, for segmentation, lesion_gate.json (when a mask counts as "no
lesion", fitted on the validation fold; --no-lesion-gate skips it), for
classification temperature.json and malignancy_threshold.json (the calibration
temperature and the cut on P(malignant), fitted on the validation fold); with
--external, external/<dataset>/metrics.json and plots/ for each dataset. Without
--img-size, segmentation on a CPU-only machine trains at 96 pixels, 128 with
a GPU (training.strategy.device_defaults). TensorFlow's oneDNN
CPU kernels are turned on unless TF_ENABLE_ONEDNN_OPTS is set (cli.prefer_onednn).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from cli import exit_on_user_error, with_overrides
from data.classes import CLASS_NAMES
from training.config import INPUT_NORMS, MIXED_PRECISION, NORMS, SCHEDULES, STRATEGIES, TASKS, TrainConfig
from training.runs import increment_run_dir

DEFAULTS = TrainConfig()


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (kebab-case flags, help on each)."""
    from losses.classification import CLS_LOSSES
    from losses.segmentation import SEG_LOSSES
    from models.registry import model_names
    from pipeline.augment import PRESETS
    from training.strategy import CPU_TASK_DEFAULTS

    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    p.add_argument(
        "--task",
        choices=TASKS,
        default=DEFAULTS.task,
        help="seg: lesion segmentation; cls: 3 classes; joint: one model with both (shared encoder)",
    )
    p.add_argument(
        "--model",
        choices=model_names(),
        default="",
        help=f"seg: {', '.join(model_names('seg'))} (default unet); "
        f"cls: {', '.join(model_names('cls'))} (default efficientnet_b0); "
        f"joint: {', '.join(model_names('joint'))} (default unet)",
    )
    p.add_argument(
        "--data-dir",
        nargs="+",
        default=[],
        help="BUSI-layout folder or manifest .csv, or several: each is a site (NAME=PATH names it; case ids "
        "become NAME/id, folds are stratified by class and site) (default: built-in synthetic data)",
    )
    p.add_argument("--splits", default="", help="splits JSON to use (default: the dataset's own, made once)")
    p.add_argument(
        "--fold",
        default="0",
        help="fold index, 'all' for cross-validation, or site:NAME to train on the other sites and "
        "validate on site NAME (leave-one-site-out) (default 0)",
    )
    p.add_argument(
        "--external",
        nargs="+",
        default=[],
        help="datasets (folders or manifests) to evaluate each fold's best model on after training: "
        "external/<dataset>/metrics.json in the run, beside the internal metrics",
    )
    p.add_argument(
        "--folds",
        type=int,
        default=DEFAULTS.folds,
        help="folds when the dataset's splits are made (first use of a dataset; ignored when they exist)",
    )
    cpu = ", ".join(f"{t}: {v['img_size']}" for t, v in CPU_TASK_DEFAULTS.items() if "img_size" in v)
    p.add_argument(
        "--img-size",
        type=int,
        default=None,
        help=f"side of the square model input (default {DEFAULTS.img_size}; on a CPU-only machine {cpu})",
    )
    p.add_argument(
        "--channels",
        type=int,
        choices=[1, 3],
        default=DEFAULTS.channels,
        help="model input channels (gray images are repeated, colour ones reduced to luma for 1)",
    )
    p.add_argument("--epochs", type=int, default=DEFAULTS.epochs, help="number of epochs")
    p.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="batch size per replica")
    p.add_argument(
        "--lr",
        type=float,
        default=DEFAULTS.lr,
        help="learning rate for one replica's batch; scaled linearly with replicas (default 1e-3; 1e-4 for the "
        "keras-hub classifiers deit_tiny and mit_b0_cls)",
    )
    p.add_argument(
        "--loss",
        choices=[*SEG_LOSSES, *CLS_LOSSES],
        default="",
        help=f"seg and joint: {', '.join(SEG_LOSSES)} (default bce_dice); cls: {', '.join(CLS_LOSSES)} (default ce, "
        "with --oversample; focal and weighted_ce weight by the training split's class frequencies)",
    )
    p.add_argument(
        "--cls-loss",
        choices=CLS_LOSSES,
        default=DEFAULTS.cls_loss,
        help="joint: the classification loss (default ce, with --oversample)",
    )
    p.add_argument(
        "--cls-weight",
        type=float,
        default=DEFAULTS.cls_weight,
        help="joint: weight of the classification loss beside the segmentation loss (default 1)",
    )
    p.add_argument(
        "--consistency",
        type=float,
        default=DEFAULTS.consistency,
        help="joint: weight of a penalty when the class head's P(lesion) = 1 - P(normal) and the mask's "
        "lesion presence (mean of its top 0.5%% pixels) disagree (default 0: off)",
    )
    p.add_argument(
        "--weights",
        default=DEFAULTS.weights,
        help="none (random init); cls and joint efficientnet_b0_unet: imagenet (downloads; frozen backbone for "
        "--freeze-epochs, then all layers at lr/10); the keras-hub models (segformer_b0/b1, mit_b0_cls, deit_tiny): "
        "a keras-hub preset name or directory for the encoder (e.g. segformer_b0_ade20k_512, "
        "deit_tiny_distilled_patch16_224_imagenet; downloads a name; cls and joint freeze as for imagenet); "
        "every task: a .keras / .weights.h5 file of the same model, e.g. another run's weights/best.keras to adapt "
        "it to a new site",
    )
    p.add_argument(
        "--freeze-epochs",
        type=int,
        default=DEFAULTS.freeze_epochs,
        help="cls and joint with --weights imagenet or a keras-hub preset: epochs with the backbone frozen",
    )
    p.add_argument("--gamma", type=float, default=DEFAULTS.gamma, help="cls: focal loss gamma")
    p.add_argument("--label-smoothing", type=float, default=DEFAULTS.label_smoothing, help="cls: label smoothing")
    p.add_argument(
        "--oversample",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="draw the classes equally often in training (cls default: on with --loss ce, off with the "
        "weighted losses; seg default: off)",
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
    p.add_argument(
        "--base-filters", type=int, default=DEFAULTS.base_filters, help="seg, joint: filters of the first level"
    )
    p.add_argument(
        "--depth",
        type=int,
        default=DEFAULTS.depth,
        help="seg, joint U-Net/ResUNet: down-sampling steps; --img-size must be a multiple of 2**depth",
    )
    p.add_argument(
        "--norm",
        choices=NORMS,
        default=DEFAULTS.norm,
        help="seg, joint: instance norm (default) or synchronized batch norm after each convolution",
    )
    p.add_argument(
        "--input-norm",
        choices=INPUT_NORMS,
        default=DEFAULTS.input_norm,
        help="how the model scales its input pixels: fixed (/255, or the backbone's ImageNet normalization), or "
        "image: each image standardized by its own mean and standard deviation (scanner gain and contrast)",
    )
    p.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default=DEFAULTS.schedule,
        help="learning-rate schedule: cosine decay to 5%% over the run, or constant",
    )
    p.add_argument(
        "--dropout",
        type=float,
        default=DEFAULTS.dropout,
        help="seg: spatial dropout in the deepest levels; cls: dropout before the last layer; joint: both (0: off)",
    )
    p.add_argument(
        "--patch-size",
        type=int,
        default=DEFAULTS.patch_size,
        help="deit_tiny: side of a patch in pixels (default its own, 16; --img-size must be a multiple of it)",
    )
    p.add_argument(
        "--num-layers",
        type=int,
        default=DEFAULTS.num_layers,
        help="deit_tiny: transformer blocks (default its own, 12)",
    )
    p.add_argument(
        "--drop-path",
        type=float,
        default=DEFAULTS.drop_path,
        help="mit_b0_cls, segformer_b0/b1: stochastic depth rate of the last encoder block, rising linearly "
        "from 0 in the first (default 0.1)",
    )
    p.add_argument(
        "--export",
        action=argparse.BooleanOptionalAction,
        default=DEFAULTS.export,
        help="write each fold's best weights as a SavedModel in saved_model/ (default on)",
    )
    p.add_argument(
        "--lesion-gate",
        action=argparse.BooleanOptionalAction,
        default=DEFAULTS.lesion_gate,
        help="seg, joint: fit on the validation fold when a mask counts as 'no lesion' (smallest area and mean "
        "probability), save it with the run and apply it in evaluate.py, predict.py and the export (default on)",
    )
    p.add_argument(
        "--presence-head",
        action=argparse.BooleanOptionalAction,
        default=DEFAULTS.presence_head,
        help="seg, joint U-Net/ResUNet: add an image-level lesion-presence logit to every pixel's, read from the "
        "deepest features",
    )
    p.add_argument("--project", default=DEFAULTS.project, help="root folder of runs")
    p.add_argument("--name", default=DEFAULTS.name, help="run name (incremented if taken)")
    p.add_argument("--exist-ok", action="store_true", help="reuse runs/<task>/<name> instead of incrementing")
    p.add_argument("--resume", default="", help="run folder to continue from its last completed epoch")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed, help="seed of shuffling, augmentation and init")
    p.add_argument(
        "--max-samples", type=int, default=DEFAULTS.max_samples, help="debug: use at most this many cases per split"
    )
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` (default: the command line)."""
    return build_parser().parse_args(argv)


RUN_FLAGS = ("resume", "exist_ok")
"""Flags that choose what to do with a run folder, not how to train: not part of :class:`TrainConfig`."""
DERIVED_FIELDS = ("holdout_site",)
""":class:`TrainConfig` fields set from another flag (``--fold site:NAME``), not a flag of their own."""
SITE_FOLD = "site:"


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Turn parsed flags into the run's frozen config: every :class:`TrainConfig` field from its flag.

    Raises:
        ValueError: If a config field has no flag (or a flag no field), or ``--fold`` is not an index or 'all'.
    """
    names = {f.name for f in fields(TrainConfig)} - set(DERIVED_FIELDS)
    flags = set(vars(args)) - set(RUN_FLAGS)
    if names != flags:
        raise ValueError(
            f"train.py's flags and TrainConfig's fields differ: no flag for {sorted(names - flags)}, "
            f"no field for {sorted(flags - names)}"
        )
    values = {name: getattr(args, name) for name in names}
    fold = str(args.fold).strip()
    if fold.lower().startswith(SITE_FOLD):
        values["holdout_site"] = fold[len(SITE_FOLD) :].strip()
        if not values["holdout_site"]:
            raise ValueError(f"`--fold site:NAME` needs a site name. Received: --fold {args.fold}")
        values["fold"] = 0
    elif fold.lower() != "all" and not fold.lstrip("-").isdigit():
        raise ValueError(f"`--fold` must be a fold index, 'all' or site:NAME. Received: --fold {args.fold}")
    else:
        values["fold"] = -1 if fold.lower() == "all" else int(fold)
    values["classes"] = tuple(args.classes)
    if values["img_size"] is None:
        from training.strategy import device_defaults

        values["img_size"] = device_defaults(values["task"])["img_size"]
    return TrainConfig(**values)


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
    if not args.resume and args.img_size is None and cfg.img_size != DEFAULTS.img_size:
        print(f"img_size={cfg.img_size}: the {cfg.task} default on a CPU-only machine ({DEFAULTS.img_size} with a GPU)")
    print(f"run folder: {run_dir}")
    if cfg.task == "cls" and cfg.oversample and cfg.loss != "ce":
        print(f"note: --oversample with --loss {cfg.loss} corrects the class imbalance twice", file=sys.stderr)
    on_best = None
    if cfg.export:
        from serving.export import save_run_servable

        on_best = save_run_servable
    result = train(cfg, run_dir, resume=bool(args.resume), devices=devices, on_best=on_best)
    if result:
        keys = task_spec(cfg.task).summary_keys
        print(f"Results: {format_metrics(result, keys)}")
        for name, ext in result.get("external", {}).items():
            print(f"External {name}: {format_metrics(ext, keys)}")
        saved = ", saved_model/" if cfg.export else ""
        plots = "seg/, cls/" if cfg.task == "joint" else "plots/"
        print(f"Wrote {run_dir}: config.json, splits.json, weights/, history.csv, metrics.json, {plots}{saved}")
    result["run_dir"] = str(run_dir)
    return result


def run(devices: Sequence[str] | None = None, **overrides: Any) -> dict[str, Any]:
    """Train from Python, e.g. ``run(task="seg", epochs=1, max_samples=8)``; flags' defaults apply."""
    if "fold" in overrides:
        overrides["fold"] = str(overrides["fold"])
    return main(with_overrides(parse_args([]), overrides), devices=devices)


if __name__ == "__main__":
    sys.exit(exit_on_user_error(lambda: main(parse_args())))
