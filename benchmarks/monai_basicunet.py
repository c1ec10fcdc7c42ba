"""MONAI's BasicUNet on the same BUSI folds as ``seg_busi.py``: the segmentation reference, measured here.

The issue's reference (MONAI 1.6 ``BasicUNet``, defaults, DiceCE loss) was measured on data
prepared outside this project. This script trains it on exactly what ``seg_busi.py`` trains
our U-Net on: the same cases of the duplicate-grouped splits (fold 0; others with
``--folds``), decoded and resized to 128x128 by the project's pipeline, augmented by the
project's ``flip_rotate`` preset, scored by the project's per-image Dice and IoU (threshold
0.5). 30 epochs, batch 8, Adam 1e-3 constant, no early stopping; inputs scaled to [0, 1];
one sigmoid output channel (``DiceCELoss(sigmoid=True)``: Dice per image plus BCE from the
logits). Each (fold, seed, malloc setting) runs in its own process; results are saved after
every run.

PyTorch and MONAI are not dependencies of the project. Install them beside it, e.g. in a
virtual environment that sees the project's packages::

    python -m venv --system-site-packages .venv-monai
    .venv-monai/bin/pip install torch==2.13.0 monai==1.6.0

Usage:
    .venv-monai/bin/python benchmarks/monai_basicunet.py --seeds 0 1 2 --variants default
    .venv-monai/bin/python benchmarks/monai_basicunet.py --seeds 0 --variants no-trim
    .venv-monai/bin/python benchmarks/monai_basicunet.py --folds 1 2 3 4 --variants default
    python benchmarks/monai_basicunet.py --from-json benchmarks/results/monai_basicunet.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import (
    REPO,
    VARIANTS,
    add_training_run_args,
    command_line,
    data_dir_missing,
    fold_sizes,
    head_commit,
    history_summary,
    render_from_json,
    save_runs,
    spread,
    spread_groups,
    variant_env,
    write_json,
)
from seg_vs_basicunet import SEG_JSON, update_comparison

SECTION = "monai_basicunet"
KEY = ("fold", "seed", "variant")
BATCH = 8


def fold_arrays(data_dir: Path, project: Path, fold: int, img_size: int = 128) -> dict[str, np.ndarray]:
    """One fold's benign and malignant cases as ``seg_busi.py`` sees them, before augmentation.

    Returns:
        ``x_train``/``x_val`` uint8 ``(N, S, S, 3)`` and ``y_train``/``y_val`` uint8 ``(N, S, S)``, S = ``img_size``.
    """
    from config.train import TrainConfig
    from training.data import fold_records, prepare_data

    cfg = TrainConfig(
        task="seg",
        data_dir=str(data_dir),
        project=str(project),
        fold=fold,
        img_size=img_size,
        classes=("benign", "malignant"),
    )
    train, val = fold_records(prepare_data(cfg), cfg, fold)
    out = {}
    for tag, records in (("train", train), ("val", val)):
        out[f"x_{tag}"], out[f"y_{tag}"] = case_arrays(records, img_size)
    return out


def case_arrays(records: list, img_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 ``(N, S, S, 3)`` and masks uint8 ``(N, S, S)`` of ``records``, read by the project's pipeline."""
    from pipeline.config import PipelineConfig
    from pipeline.dataset import build_dataset

    pcfg = PipelineConfig(img_size=img_size, batch_size=BATCH, augment="none")
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in build_dataset(records, "seg", pcfg, training=False)], strict=True)
    return np.round(np.concatenate(xs)).clip(0, 255).astype(np.uint8), np.concatenate(ys)[..., 0].astype(np.uint8)


def train_worker(args: argparse.Namespace) -> None:
    """Train BasicUNet for one fold and seed in this process, writing the history to ``args.worker_out`` every epoch."""
    try:
        import monai
        import torch
        from monai.losses import DiceCELoss
        from monai.networks.nets import BasicUNet
    except ImportError as e:
        raise SystemExit(
            f"error: this benchmark needs PyTorch and MONAI, which the project does not depend on ({e}). "
            "Install them beside it: pip install torch==2.13.0 monai==1.6.0"
        ) from e

    from metrics.segmentation import per_image_scores
    from pipeline.augment import Augmenter

    d = fold_arrays(args.data_dir, args.project, args.fold, args.img_size)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    augment = Augmenter(args.augment)
    net = BasicUNet(spatial_dims=2, in_channels=3, out_channels=1)
    loss_fn = DiceCELoss(sigmoid=True)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    steps = args.epochs * (len(d["x_train"]) // BATCH)

    # train.py's cosine schedule: from 1e-3 down to 5% of it over the run (Keras' CosineDecay, alpha 0.05).
    def cosine(k: int) -> float:
        return 0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * min(k, steps) / steps))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine) if args.schedule == "cosine" else None
    best = {"dice": -1.0, "state": None}

    def to_tensor(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0

    x_val = to_tensor(d["x_val"])
    n = len(d["x_train"]) // BATCH * BATCH
    history = []
    info = {
        "parameters": sum(p.numel() for p in net.parameters()),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "train_images": n,
        "train_cases": len(d["x_train"]),
        "val_cases": len(d["x_val"]),
    }
    print(json.dumps(info), flush=True)
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        net.train()
        order = rng.permutation(len(d["x_train"]))[:n]
        total = 0.0
        for i in range(0, n, BATCH):
            pairs = [
                augment(d["x_train"][j], d["y_train"][j][..., None], int(rng.integers(2**31)))
                for j in order[i : i + BATCH]
            ]
            xb = to_tensor(np.stack([p[0] for p in pairs]))
            yb = torch.from_numpy(np.stack([p[1] for p in pairs])).permute(0, 3, 1, 2).float()
            opt.zero_grad()
            loss = loss_fn(net(xb), yb)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total += loss.item()
        train_seconds = time.perf_counter() - t0
        net.eval()
        with torch.no_grad():
            probs = torch.cat([net(x_val[i : i + 16]) for i in range(0, len(x_val), 16)]).sigmoid().numpy()
        dice, iou = per_image_scores(d["y_val"], probs[:, 0])
        history.append(
            {
                "epoch": epoch,
                "loss": total / (n // BATCH),
                "val_dice": float(dice.mean()),
                "val_iou": float(iou.mean()),
                "train_seconds": train_seconds,
                "epoch_seconds": time.perf_counter() - t0,
            }
        )
        print(
            f"epoch {epoch}/{args.epochs}: loss {history[-1]['loss']:.4f}, val Dice {dice.mean():.3f}, "
            f"IoU {iou.mean():.3f}, {history[-1]['epoch_seconds']:.1f} s",
            flush=True,
        )
        if dice.mean() > best["dice"]:
            best = {"dice": float(dice.mean()), "state": {k: v.clone() for k, v in net.state_dict().items()}}
        write_json(args.worker_out, {**info, "history": history})
    if args.external:
        net.load_state_dict(best["state"])  # the best validation epoch, as train.py's best.keras
        write_json(args.external_out, {**info, "history": history, **score_external_cases(net, args)})


def score_external_cases(net, args: argparse.Namespace) -> dict:
    """Per-image Dice of ``net`` on every case of ``args.external`` (its own exclusions), with groups and scanners."""
    import torch

    from data.sources import parse_sources
    from evaluation.external import load_external
    from metrics.segmentation import per_image_scores

    ext = load_external(parse_sources([args.external])[0], ("benign", "malignant"))
    x, y = case_arrays(list(ext.records), args.img_size)
    net.eval()
    with torch.no_grad():
        t = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0
        probs = torch.cat([net(t[i : i + 32]) for i in range(0, len(t), 32)]).sigmoid().numpy()[:, 0]
    dice, _ = per_image_scores(y, probs)
    return {
        "external": {
            "name": ext.name,
            "ids": [r.case_id for r in ext.records],
            "groups": [r.group or r.case_id for r in ext.records],
            "devices": [r.device for r in ext.records],
            "dice": dice.tolist(),
        }
    }


def run_one(fold: int, seed: int, variant: str, args: argparse.Namespace) -> dict:
    """Train one fold and seed under one malloc setting in a child process and summarize its history."""
    prefix = f"f{fold}-" if fold else ""  # fold 0 keeps the names of the runs measured before --folds
    out = args.project / "monai_basicunet" / f"{prefix}s{seed}-{variant}.json"
    cmd = [
        sys.executable, str(Path(__file__).resolve()), "--worker", "--fold", str(fold), "--seed", str(seed),
        "--epochs", str(args.epochs),
        "--data-dir", str(args.data_dir), "--project", str(args.project), "--worker-out", str(out),
    ]  # fmt: skip
    commit = head_commit()
    print(f"== BasicUNet fold {fold}, seed {seed}, {variant} malloc, at {commit}", flush=True)
    subprocess.run(cmd, cwd=REPO, env=variant_env(variant), check=True)
    return summarize(json.loads(out.read_text()), fold, seed, variant, commit)


def summarize(run: dict, fold: int, seed: int, variant: str, commit: str) -> dict:
    """A table row from a worker's output: last and best validation Dice/IoU and training speed.

    Speed leaves out the first epoch, as ``seg_busi.py`` does.
    """
    return {
        "fold": fold,
        "seed": seed,
        "variant": variant,
        **history_summary(run["history"], run["train_images"]),
        **{k: run[k] for k in ("parameters", "torch", "monai", "train_cases", "val_cases")},
        "commit": commit,
    }


def markdown(result: dict) -> str:
    """The BENCHMARKS.md section."""
    runs = sorted(result["runs"], key=lambda r: (r["fold"], r["seed"], list(VARIANTS).index(r["variant"])))
    first = runs[0]
    lines = [
        "## Reference: MONAI BasicUNet on the same BUSI folds",
        "",
        *[f"Command: `{c}`  " for c in result["commands"]],
        f"Protocol: {result['protocol']}. Date: {result['date']}.",
        "",
        f"MONAI {first['monai']} `BasicUNet` with its defaults ({first['parameters'] / 1e6:.2f}M parameters), "
        f"PyTorch {first['torch']} on the CPU, trained on the cases, pixels, augmentation and Dice of the "
        f"segmentation benchmark above ({fold_sizes(runs)} images). "
        "The commands run under a Python that has PyTorch and MONAI besides the project (the script's docstring "
        "shows how to set one up).",
        "",
        "| fold | seed | malloc | last-epoch Dice | last-epoch IoU | best Dice (epoch) | s/epoch | train img/s "
        "| code |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['fold']} | {r['seed']} | {r['variant']} | {r['last']['dice']:.3f} | {r['last']['iou']:.3f} | "
            f"{r['best']['dice']:.3f} ({r['best']['epoch']}) | {r['seconds_per_epoch']:.1f} | "
            f"{r['train_images_per_second']:.1f} | {r['commit']} |"
        )
    for over, other in (("seed", "fold"), ("fold", "seed")):
        for (variant, fixed), rows in spread_groups(runs, over, ("variant", other)):
            lines += ["", f"{over.capitalize()} to {over} ({variant} malloc, {other} {fixed}; " + spread(rows, over)]
    return "\n".join([*lines, ""])


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=30, help="epochs per run (protocol: 30)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds to train (weights, order, augmentation)")
    p.add_argument(
        "--folds", type=int, nargs="+", default=[0], help="folds of the grouped splits to validate on (protocol: 0)"
    )
    add_training_run_args(p, SECTION)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--fold", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    # Another protocol for one worker (external.py trains BasicUNet the way train.py trains the U-Net):
    p.add_argument("--img-size", type=int, default=128, help=argparse.SUPPRESS)
    p.add_argument("--augment", default="flip_rotate", help=argparse.SUPPRESS)
    p.add_argument("--schedule", choices=["constant", "cosine"], default="constant", help=argparse.SUPPRESS)
    p.add_argument("--external", default="", help=argparse.SUPPRESS)
    p.add_argument("--external-out", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if render_from_json(args, SECTION, markdown):
        return 0
    if data_dir_missing(args):
        return 2
    if args.worker:
        train_worker(args)
        return 0
    command = command_line("monai_basicunet.py", argv)
    protocol = (
        f"benign + malignant, fold per row, 128x128, {args.epochs} epochs, batch 8, Adam 1e-3 constant, "
        "DiceCE (sigmoid), flip + rotation +-15 degrees, no early stopping"
    )
    runs = []
    for fold in args.folds:
        for seed in args.seeds:
            for variant in args.variants:
                runs.append(run_one(fold, seed, variant, args))
                result = {"command": command, "protocol": protocol, "date": time.strftime("%Y-%m-%d"), "runs": runs}
                save_runs(args, SECTION, result, KEY, markdown)
                update_comparison(args, seg_json=SEG_JSON, basic_json=args.json)
    for r in runs:
        print(
            f"fold {r['fold']} seed {r['seed']} {r['variant']:>8}: "
            f"last Dice {r['last']['dice']:.3f} IoU {r['last']['iou']:.3f}, "
            f"best Dice {r['best']['dice']:.3f} (epoch {r['best']['epoch']}), {r['seconds_per_epoch']:.1f} s/epoch, "
            f"{r['train_images_per_second']:.1f} img/s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
