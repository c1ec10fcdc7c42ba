"""Train a breast ultrasound model: lesion segmentation or normal/benign/malignant classification.

Usage:
    python train.py --task seg
    python train.py --task cls
    python train.py --task cls --model resnet50_se --loss weighted_ce --img-size 224 --batch-size 16
    python train.py --task cls --weights imagenet --freeze-epochs 3
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
    python train.py --task cls --crop lesion --segmenter runs/seg/exp \
        --data-dir ../shared/datasets/Dataset_BUSI_with_GT --external ../shared/datasets/BUS-BRA/manifest.csv

Every run writes runs/<task>/<name>/ (incremented, never overwritten): config.json,
splits.json, weights/ (best, last), history.csv, metrics.json, plots/, tensorboard/,
saved_model/ (--no-export skips it), what was fitted on the validation fold
(lesion_gate.json, temperature.json, malignancy_threshold.json) and, with --external,
external/<dataset>/. The default --img-size: config.train.default_img_size.
A lesion classifier (--crop lesion) with --segmenter SEG_RUN ({fold}: each fold's segmentation run)
also diagnoses every image of its validation fold and of each --external dataset, as
evaluate.py --segmenter does (eval/diagnosis-<segmenter>-<dataset>-<split>/).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cli import exit_on_user_error, with_overrides
from config.flags import add_config_flags, config_from_args
from config.train import IMG_SIZE, TrainConfig
from core.errors import MissingFileError
from evaluation.run_files import increment_run_dir

RUN_FLAGS = ("resume", "exist_ok")  # what to do with a run folder, not how to train: not in TrainConfig


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser: a flag per :class:`TrainConfig` field (:mod:`config.flags`), and the run flags."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    add_config_flags(p)
    p.add_argument("--exist-ok", action="store_true", help="reuse runs/<task>/<name> instead of incrementing")
    p.add_argument("--resume", default="", help="run folder to continue from its last completed epoch")
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` (default: the command line)."""
    return build_parser().parse_args(argv)


def run_config(args: argparse.Namespace) -> tuple[TrainConfig, Path]:
    """The config and the run folder: a resumed run's own, or new ones from the flags.

    Raises:
        FileNotFoundError: If ``--resume`` names a folder without ``config.json``.
    """
    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "config.json").is_file():
            raise MissingFileError(f"`--resume` must be a run folder with config.json. Received: {run_dir}")
        return TrainConfig.load(run_dir / "config.json"), run_dir
    cfg = config_from_args(args)
    if cfg.adapt:
        from training.adapt import adapt_config

        defaults = build_parser()
        explicit = {k for k, v in vars(args).items() if v != defaults.get_default(k)}
        cfg = adapt_config(cfg, explicit)
        print(f"adapting {cfg.adapt}: its {cfg.task} model {cfg.model} at {cfg.img_size} px, from {cfg.weights}")
    elif args.img_size is None and cfg.img_size != IMG_SIZE:
        print(f"img_size={cfg.img_size}: the {cfg.task} default on a CPU-only machine ({IMG_SIZE} with a GPU)")
    # Workers of a multi-worker run must agree on the folder, so it is not incremented.
    if args.exist_ok or cfg.strategy == "multiworker":
        return cfg, Path(cfg.project) / cfg.task / cfg.name
    return cfg, increment_run_dir(cfg.project, cfg.task, cfg.name)


def main(args: argparse.Namespace, devices: Sequence[str] | None = None) -> dict[str, Any]:
    """Train as ``args`` say; return the metrics (or the cross-validation summary)."""
    import keras

    from evaluation.diagnosis import DIAGNOSIS_KEYS
    from evaluation.summary import format_metrics
    from evaluation.tasks import summary_keys
    from training.trainer import train

    cfg, run_dir = run_config(args)
    keras.utils.set_random_seed(cfg.seed)
    print("train: " + " ".join(f"{k}={v}" for k, v in cfg.to_dict().items()))
    print(f"run folder: {run_dir}")
    if cfg.task == "cls" and cfg.oversample and cfg.loss != "ce":
        print(f"note: --oversample with --loss {cfg.loss} corrects the class imbalance twice", file=sys.stderr)
    on_best = None
    if cfg.export and cfg.crop == "lesion":
        print("note: a lesion classifier (--crop lesion) reads crops, not images: no saved_model/ is written")
    elif cfg.export:
        from serving.export import save_run_servable

        on_best = save_run_servable
    result = train(cfg, run_dir, resume=bool(args.resume), devices=devices, on_best=on_best)
    if result:
        keys = summary_keys(cfg.task)
        print(f"Results: {format_metrics(result, keys)}")
        for name, ext in result.get("external", {}).items():
            print(f"External {name}: {format_metrics(ext, keys)}")
        for name, found in result.get("diagnosis", {}).items():
            print(f"Diagnosis {name}: {format_metrics(found, DIAGNOSIS_KEYS)}")
        saved = ", saved_model/" if on_best else ""
        plots = "seg/, cls/" if cfg.task == "joint" else "plots/"
        files = "config.json, splits.json, provenance.json, weights/, history.csv, metrics.json, report.html"
        print(f"Wrote {run_dir}: {files}, {plots}{saved}")
    result["run_dir"] = str(run_dir)
    return result


def run(devices: Sequence[str] | None = None, **overrides: Any) -> dict[str, Any]:
    """Train from Python, e.g. ``run(task="seg", epochs=1, max_samples=8)``; flags' defaults apply."""
    return main(with_overrides(parse_args([]), overrides), devices=devices)


if __name__ == "__main__":
    sys.exit(exit_on_user_error(lambda: main(parse_args())))
