"""Adapting to a new site: a BUSI segmenter fine-tuned on N BUS-BRA patients against training from scratch on them.

Protocol: BUS-BRA (read with its scanners, as ``external.py`` writes it) is split by
patient with the project's grouped folds; fold 0's validation patients are held out
and never trained on. From the other patients, the first N of one seeded shuffle
(nested: the 25 include the 10) train a U-Net with ``train.py``'s segmentation
defaults (96 px on a CPU-only machine, BCE + Dice, light augmentation, cosine
schedule) for ``--epochs`` epochs, no early stopping, no lesion gate:

- ``finetune`` starts from a BUSI run's ``weights/best.keras`` (``--weights``), the
  documented way to adapt a model to one's own hospital (docs/other-hospitals.md);
- ``scratch`` starts from random weights.

Reported: Dice per image on the held-out patients after the last epoch (no model
selection on them), with the best epoch's Dice beside it for reference (chosen on the
held-out patients themselves, so optimistic). With ``finetune``, the BUSI model as it is
(``unadapted``, N = 0) is scored on the same patients too, from its per-image Dice on
BUS-BRA (without lesion gate, as the other arms); the plot draws it as a dashed line. One (arm, N, seed) per run folder;
results merge into ``--json`` and the section (with a learning-curve plot) is
re-rendered after each.

Usage:
    python benchmarks/few_shot.py --sizes 10 25 50 100 200 --arms finetune scratch
    python benchmarks/few_shot.py --from-json benchmarks/results/few_shot.json
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import REPO, add_output_args, command_line, head_commit, render_from_json, save_runs, write_json
from external import BUSBRA_DIR, busbra_manifest
from train_step import cpu_info

sys.path.insert(0, str(REPO))

SECTION = "few_shot"
KEY = ("arm", "patients", "seed")
DEFAULT_SOURCE = REPO / "benchmarks" / "runs" / "external" / "seg" / "baseline-seg-busi-f0-s0"
PLOT = REPO / "benchmarks" / "results" / "few_shot.png"


def patient_splits(manifest: Path, project: Path, sizes: list[int], seed: int) -> dict[int, dict]:
    """A splits document per N: the first N patients of a seeded shuffle train, fold 0's patients are held out.

    Raises:
        ValueError: If N exceeds the patients available for training.
    """
    from data.report import InspectOptions, analyze_dataset, dataset_out_dir

    analysis = analyze_dataset(
        manifest, InspectOptions(), existing_splits=dataset_out_dir(manifest, project) / "splits.json"
    )
    held = sorted(analysis.splits["folds"][0]["val"])
    pool = sorted(analysis.splits["folds"][0]["train"])
    groups = analysis.groups
    patients = sorted({groups[i] for i in pool})
    order = np.random.default_rng(seed).permutation(len(patients))
    out = {}
    for n in sizes:
        if n > len(patients):
            raise ValueError(f"`--sizes`: {n} patients asked, {len(patients)} available for training")
        chosen = {patients[k] for k in order[:n]}
        out[n] = {
            "excluded": analysis.splits["excluded"],
            "test": [],
            "folds": [{"train": [i for i in pool if groups[i] in chosen], "val": held}],
            "few_shot": {"patients": n, "seed": seed},
        }
    return out


def run_one(args: argparse.Namespace, arm: str, n: int, splits: dict) -> Path:
    """Train one arm on N patients (unless its run is complete); return the run folder."""
    name = f"{arm}-n{n}-s{args.seed}"
    run_dir = args.project / "seg" / name
    if (run_dir / "metrics.json").is_file():
        return run_dir
    split_file = write_json(args.project / "splits" / f"n{n}-s{args.seed}.json", splits)
    source_cfg = json.loads((args.source / "config.json").read_text())
    cmd = [
        sys.executable, "train.py", "--task", "seg", "--data-dir", str(args.manifest), "--splits", str(split_file),
        "--fold", "0", "--classes", "benign", "malignant", "--epochs", str(args.epochs), "--patience", "0",
        "--seed", str(args.seed), "--no-export", "--no-lesion-gate", "--project", str(args.project), "--name", name,
        "--exist-ok", "--base-filters", str(source_cfg["base_filters"]), "--depth", str(source_cfg["depth"]),
        "--img-size", str(source_cfg["img_size"]),
        *(["--resume", str(run_dir)] if (run_dir / "config.json").is_file() else []),
        *(["--weights", str(args.source / "weights" / "best.keras")] if arm == "finetune" else []),
    ]  # fmt: skip
    print(f"== {arm}, {n} patients: {' '.join(cmd[1:])}", flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)
    return run_dir


def unadapted_row(source: Path, held: list[str], seed: int) -> dict:
    """The BUSI model as it is, on the held-out patients (N = 0): the mean of its per-image Dice without lesion
    gate, from its scoring on all of BUS-BRA (``external.py`` writes ``external/BUS-BRA/metrics.json``).

    Raises:
        FileNotFoundError: If the source run was not scored on BUS-BRA.
        ValueError: If a held-out image is missing from that scoring.
    """
    path = source / "external" / "BUS-BRA" / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: score the source run on BUS-BRA first (benchmarks/external.py)")
    by_id = {r["id"]: r["dice_ungated"] for r in json.loads(path.read_text())["per_image"]}
    missing = [i for i in held if i not in by_id]
    if missing:
        raise ValueError(f"{len(missing)} held-out images are not in {path}, e.g. {missing[:3]}")
    dice = float(np.mean([by_id[i] for i in held]))
    return {
        "arm": "unadapted", "patients": 0, "seed": seed, "train_images": 0, "held_out_images": len(held),
        "last_dice": dice, "best_dice": dice, "best_epoch": 0, "epochs": 0,
    }  # fmt: skip


def read_row(run_dir: Path, arm: str, n: int, seed: int) -> dict:
    """Held-out Dice after the last epoch and at the best one, and the training images."""
    with open(run_dir / "history.csv", newline="") as f:
        history = list(csv.DictReader(f))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    dice = [float(r["val_dice"]) for r in history]
    return {
        "arm": arm,
        "patients": n,
        "seed": seed,
        "train_images": metrics["train_cases"],
        "held_out_images": metrics["val_cases"],
        "last_dice": dice[-1],
        "best_dice": max(dice),
        "best_epoch": int(np.argmax(dice)) + 1,
        "epochs": len(dice),
    }


def plot(result: dict, path: Path) -> Path:
    """Held-out Dice against training patients, one line per arm."""
    from reports.plots import curves_plot

    series = {}
    unadapted = [r["last_dice"] for r in result["runs"] if r["arm"] == "unadapted" and not r["seed"]]
    references = {"BUSI model, not adapted": unadapted[0]} if unadapted else {}
    for arm in sorted({r["arm"] for r in result["runs"]} - {"unadapted"}):
        rows = sorted((r for r in result["runs"] if r["arm"] == arm), key=lambda r: r["patients"])
        series[f"{arm} (last epoch)"] = ([r["patients"] for r in rows], [r["last_dice"] for r in rows])
    return curves_plot(
        series, path, "BUS-BRA patients trained on", "Dice on held-out BUS-BRA patients", True, references
    )


def markdown(result: dict) -> str:
    """The BENCHMARKS.md section."""
    runs = sorted(result["runs"], key=lambda r: (r["patients"], r["arm"], r["seed"]))
    cpu = result["cpu"]
    lines = [
        "## Adapting to a new site: fine-tuning on a few BUS-BRA patients (issue 21)",
        "",
        *[f"Command: `{c}`  " for c in result["commands"]],
        f"Machine: {cpu['model']}, {cpu['cores']} cores. Date: {result['date']}. {result['protocol']}",
        "",
        f"![learning curve]({PLOT.relative_to(REPO).as_posix()})",
        "",
        "| patients | arm | seed | training images | held-out Dice, last epoch | best epoch's Dice (optimistic) "
        "| code |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['patients']} | {r['arm']} | {r['seed']} | {r['train_images']} | {r['last_dice']:.3f} | "
            f"{r['best_dice']:.3f} ({r['best_epoch']}) | {r.get('commit', '')} |"
        )
    return "\n".join([*lines, ""])


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 25, 50, 100, 200], help="training patients")
    p.add_argument("--arms", nargs="+", choices=["finetune", "scratch"], default=["finetune", "scratch"])
    p.add_argument("--seed", type=int, default=0, help="seed of the patient draw and of training")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="the BUSI segmentation run to fine-tune")
    p.add_argument("--busbra", type=Path, default=BUSBRA_DIR, help="BUS-BRA folder")
    p.add_argument("--project", type=Path, default=REPO / "benchmarks" / "runs" / "few_shot", help="run folders")
    add_output_args(p, SECTION)
    p.add_argument("--no-markdown", action="store_true", help="do not touch BENCHMARKS.md")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if render_from_json(args, SECTION, markdown):
        return 0
    if not (args.source / "weights" / "best.keras").is_file():
        print(f"error: `--source` has no weights/best.keras: {args.source}", file=sys.stderr)
        return 2
    args.project = args.project.resolve()
    args.manifest = busbra_manifest(args.project, args.busbra)
    splits = patient_splits(args.manifest, args.project, args.sizes, args.seed)
    held = next(iter(splits.values()))["folds"][0]["val"]
    protocol = (
        f"Held out: BUS-BRA fold 0's patients. U-Net, train.py segmentation defaults, {args.epochs} epochs, "
        f"no early stopping, no lesion gate; finetune starts from {args.source.name}/weights/best.keras."
    )
    jobs = [(arm, n) for n in args.sizes for arm in args.arms]
    if "finetune" in args.arms:
        jobs.insert(0, ("unadapted", 0))
    for arm, n in jobs:
        if arm == "unadapted":
            row = {**unadapted_row(args.source, held, args.seed), "commit": head_commit()}
        else:
            run_dir = run_one(args, arm, n, splits[n])
            row = {**read_row(run_dir, arm, n, args.seed), "commit": head_commit()}
        result = {
            "command": command_line("few_shot.py", argv),
            "protocol": protocol,
            "cpu": cpu_info(),
            "date": time.strftime("%Y-%m-%d"),
            "runs": [row],
        }
        merged = save_runs(args, SECTION, result, KEY, markdown)
        plot(merged, PLOT)
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
