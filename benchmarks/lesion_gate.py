"""Normal images left empty: each candidate of issue 24 on BUSI's grouped folds, all three classes.

Protocol: ``train.py --task seg`` with its defaults (U-Net, BCE + Dice, 20 epochs,
96 px on a CPU-only machine, light augmentation, cosine LR) on BUSI with all
three classes, one fold of the duplicate-grouped splits per run, plus each
candidate's own flags. Every run's best weights are scored on its validation
fold twice: as the model outputs them ("ungated") and through the lesion gate
fitted on that fold (each half of the fold scored with the gate fitted on the
other half, :mod:`evaluation.gate`). Reported per run and pooled over the folds
run: the share of normal images left empty and of lesion images wrongly left
empty (Wilson 95% intervals), and the mean Dice on lesion images (bootstrap
95% interval over images).

One fold per invocation is fine: results merge into ``--json`` and the section
is re-rendered after every run. A run folder that already has ``metrics.json``
is read, not trained again (its gate is fitted now if it was trained before
the gate existed), so an interrupted invocation resumes where it stopped.

Usage:
    python benchmarks/lesion_gate.py --candidates baseline --folds 0
    python benchmarks/lesion_gate.py --candidates baseline oversample presence --folds 0 1 2
    python benchmarks/lesion_gate.py --from-json benchmarks/results/lesion_gate.json
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
from _common import REPO, add_output_args, command_line, data_dir_missing, head_commit, history_summary, save_runs
from train_step import cpu_info

sys.path.insert(0, str(REPO))

SECTION = "lesion_gate"
CANDIDATES: dict[str, list[str]] = {
    "baseline": [],
    "oversample": ["--oversample"],
    "presence": ["--presence-head"],
    "image_loss": ["--loss", "bce_dice_image"],
    "presence+image_loss": ["--presence-head", "--loss", "bce_dice_image"],
}
"""Each candidate's train.py flags on top of the protocol's."""
KEY = ("candidate", "fold", "seed")
SUMMARY = ("lesion_dice", "normal_left_empty", "lesion_left_empty")
STATISTICS = (
    "max probability",
    "lesion area",
    "mean probability inside (confidence)",
    "mean of the top 1% of pixels",
)


def run_dir_of(args: argparse.Namespace, candidate: str, fold: int) -> Path:
    """The run folder of one candidate, fold and seed."""
    return args.project / "seg" / (f"{candidate}-f{fold}" + (f"-s{args.seed}" if args.seed else ""))


def train_one(args: argparse.Namespace, candidate: str, fold: int) -> Path:
    """Train (unless already complete) one candidate on one fold; returns its run folder."""
    run_dir = run_dir_of(args, candidate, fold)
    if (run_dir / "metrics.json").is_file():
        print(f"== {run_dir} is complete; reading it", flush=True)
        return run_dir
    cmd = [
        sys.executable, "train.py", "--task", "seg", "--data-dir", str(args.data_dir), "--fold", str(fold),
        "--epochs", str(args.epochs), "--seed", str(args.seed), "--no-export",
        "--project", str(args.project), "--name", run_dir.name, "--exist-ok",
        *(["--resume", str(run_dir)] if (run_dir / "config.json").is_file() else []),
        *CANDIDATES[candidate],
    ]  # fmt: skip
    print(f"== {candidate} fold {fold}: {' '.join(cmd[1:])}", flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)
    return run_dir


def _run_and_val(run_dir: Path, data_dir: Path):
    """The run's config (reading ``data_dir``, wherever the run was started from), validation cases and best model."""
    from dataclasses import replace

    from config.train import TrainConfig
    from evaluation.run_files import load_run_model
    from training.data import fold_records, prepare_data

    cfg = replace(TrainConfig.load(run_dir / "config.json"), data_dir=str(data_dir))
    _, val = fold_records(prepare_data(cfg), cfg, cfg.fold)
    return cfg, val, load_run_model(run_dir / "weights" / "best.keras")


def fit_gate_of_old_run(run_dir: Path, data_dir: Path) -> dict:
    """Score a run trained before the gate existed as training now does: fit its gate, write metrics.json."""
    from core.atomic import write_json
    from evaluation.base import EvalRequest
    from evaluation.seg import evaluate_seg

    cfg, val, model = _run_and_val(run_dir, data_dir)
    old = json.loads((run_dir / "metrics.json").read_text())
    keep = {
        k: old[k]
        for k in ("fold", "best_epoch", "epochs_completed", "monitor", "train_cases", "val_cases", "seconds")
        if k in old
    }
    result = {**evaluate_seg(model, cfg, EvalRequest(val, run_dir, fold_dir=run_dir, fit=True)), **keep}
    write_json(run_dir / "metrics.json", result)
    return result


BUDGETS = (0.0, 0.02, 0.05, 0.1, 0.2)
"""Lesion-miss budgets of the gate's fit (evaluation.gate.MAX_LESION_MISS is the default) in the sweep."""


def map_statistics_of(probs: np.ndarray) -> dict[str, np.ndarray]:
    """Image-level statistics of probability maps that could tell a normal image from a lesion image."""
    from models.postprocess import map_statistics

    flat = probs.reshape(len(probs), -1)
    area, confidence = map_statistics(probs)
    top = max(1, flat.shape[1] // 100)
    return {
        "max probability": flat.max(axis=1),
        "lesion area": area,
        "mean probability inside (confidence)": confidence,
        "mean of the top 1% of pixels": np.sort(flat, axis=1)[:, -top:].mean(axis=1),
    }


def separability(run_dir: Path, data_dir: Path) -> dict:
    """How well the run's maps tell its normal validation images from its lesion images, and the gate's trade-off.

    Returns ``{"statistics": {name: {"auc", "sensitivity_at_90_specificity"}}, "budgets": [...]}``; each budget
    row counts, cross-fitted as training scores the fold, the normals and lesions left empty and sums lesion Dice.
    """
    from sklearn.metrics import roc_auc_score

    from evaluation.gate import fit_gate, halves
    from evaluation.tta import predict_records
    from metrics.segmentation import per_image_scores

    cfg, val, model = _run_and_val(run_dir, data_dir)
    _, truths, [probs] = predict_records(model, val, cfg, "seg", tta=False)
    labels = [r.label for r in val]
    has = truths.reshape(len(truths), -1).max(axis=1) > 0.5
    stats = {}
    for name, v in map_statistics_of(probs).items():
        stats[name] = {
            "auc": float(roc_auc_score(has, v)),
            "sensitivity_at_90_specificity": float(np.mean(v[has] > np.quantile(v[~has], 0.9))),
        }
    side, budgets = halves(labels), []
    for budget in BUDGETS:
        gated = probs.copy()
        for h in (0, 1):
            gated[side == h] = fit_gate(truths[side != h], probs[side != h], budget).apply_np(probs[side == h])
        dice, _ = per_image_scores(truths, gated)
        empty = ~(gated.reshape(len(gated), -1) >= 0.5).any(axis=1)
        budgets.append(
            {
                "budget": budget,
                "normal_empty": int((empty & ~has).sum()),
                "n_normal": int((~has).sum()),
                "lesion_empty": int((empty & has).sum()),
                "n_lesion": int(has.sum()),
                "lesion_dice_sum": float(dice[has].sum()),
            }
        )
    return {"statistics": stats, "budgets": budgets}


def read_run(run_dir: Path, data_dir: Path) -> dict:
    """The row of one finished run."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if "lesion_gate" not in metrics:
        print(f"== {run_dir}: trained before the lesion gate; fitting it on its validation fold now", flush=True)
        metrics = fit_gate_of_old_run(run_dir, data_dir)
    with open(run_dir / "history.csv", newline="") as f:
        rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    per_image = [
        {k: p[k] for k in ("label", "dice", "dice_ungated", "empty", "empty_ungated") if k in p}
        for p in metrics["per_image"]
    ]
    return {
        **history_summary(rows, metrics["train_cases"] // 8 * 8),
        "train_cases": metrics["train_cases"],
        "val_cases": metrics["val_cases"],
        "best_epoch": metrics["best_epoch"],
        "gate": metrics["lesion_gate"]["gate"],
        "gated": {k: metrics[k] for k in SUMMARY} | {f"{k}_ci95": metrics[f"{k}_ci95"] for k in SUMMARY},
        "ungated": {k: metrics["ungated"][k] for k in SUMMARY}
        | {f"{k}_ci95": metrics["ungated"][f"{k}_ci95"] for k in SUMMARY},
        "dice": metrics["dice"],
        "per_image": per_image,
        "separability": separability(run_dir, data_dir),
        "run_dir": str(run_dir),
    }


def pooled(runs: list[dict], which: str) -> dict:
    """Pool the per-image results of ``runs`` (folds): shares with Wilson CIs, lesion Dice with a bootstrap CI."""
    from reports.stats import bootstrap_ci, wilson_ci

    suffix = "" if which == "gated" else "_ungated"
    images = [p for r in runs for p in r["per_image"]]
    normal = [p for p in images if p["label"] == "normal"]
    lesion = [p for p in images if p["label"] != "normal"]
    dice = np.array([p[f"dice{suffix}"] for p in lesion])
    out = {
        "n_normal": len(normal),
        "n_lesion": len(lesion),
        "lesion_dice": float(dice.mean()),
        "lesion_dice_ci95": bootstrap_ci(dice),
    }
    for key, group in (("normal_left_empty", normal), ("lesion_left_empty", lesion)):
        k = sum(bool(p[f"empty{suffix}"]) for p in group)
        out[key], out[f"{key}_ci95"] = k / len(group), wilson_ci(k, len(group))
    return out


def _share(v: float, ci: list[float]) -> str:
    return f"{v:.1%} ({ci[0]:.1%}-{ci[1]:.1%})"


def _dice(v: float, ci: list[float]) -> str:
    return f"{v:.3f} ({ci[0]:.3f}-{ci[1]:.3f})"


def _pair(u: dict, g: dict, key: str) -> str:
    """Ungated and gated value of ``key`` as two table cells."""
    fmt = _dice if key == "lesion_dice" else _share
    return f"{fmt(u[key], u[key + '_ci95'])} | {fmt(g[key], g[key + '_ci95'])}"


def markdown(result: dict) -> str:
    """The BENCHMARKS.md section."""
    cpu = result.get("cpu", {})
    lines = [
        "## Normal images left empty: the lesion gate and its candidates (issue 24)",
        "",
        *[f"Command: `{c}`  " for c in result["commands"]],
        f"Protocol: {result['protocol']}. Date: {result['date']}. Machine: {cpu.get('model', '?')}, "
        f"{cpu.get('cores', '?')} cores; runs may have shared the CPU, so s/epoch is indicative only.",
        "",
        "Data: BUSI (Al-Dhabyani et al., Data in Brief 2020), all three classes; normal images have an empty "
        "true mask. 'Ungated' scores the model's maps at 0.5; 'gated' passes them through the lesion gate fitted "
        "on the same validation fold with cross-fitting (each half scored with the gate fitted on the other "
        "half). Shares: Wilson 95% intervals; lesion Dice: per-image mean over benign and malignant images "
        "(an image left empty scores 0), bootstrap 95% interval.",
        "",
        "| candidate | fold | seed | normals left empty, ungated | gated | lesions left empty, ungated | gated | "
        "lesion Dice, ungated | gated | gate (min area, min confidence) | best epoch | s/epoch | code |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    runs = sorted(
        result["runs"],
        key=lambda r: (
            list(CANDIDATES).index(r["candidate"]) if r["candidate"] in CANDIDATES else 99,
            r["seed"],
            r["fold"],
        ),
    )
    for r in runs:
        u, g = r["ungated"], r["gated"]
        lines.append(
            f"| {r['candidate']} | {r['fold']} | {r['seed']} | "
            f"{_pair(u, g, 'normal_left_empty')} | "
            f"{_pair(u, g, 'lesion_left_empty')} | "
            f"{_pair(u, g, 'lesion_dice')} | "
            f"{r['gate']['min_area']:.4f}, {r['gate']['min_confidence']:.3f} | {r['best_epoch']} | "
            f"{r['seconds_per_epoch']:.1f} | {r['commit']} |"
        )
    lines += [
        "",
        "Pooled over the folds run (every validation image once):",
        "",
        "| candidate | seed | folds | normal images | normals left empty, ungated | gated | lesion images | "
        "lesions left empty, ungated | gated | lesion Dice, ungated | gated |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["candidate"], r["seed"]), []).append(r)
    for (cand, seed), rows in groups.items():
        u, g = pooled(rows, "ungated"), pooled(rows, "gated")
        lines.append(
            f"| {cand} | {seed} | {', '.join(str(r['fold']) for r in rows)} | {u['n_normal']} | "
            f"{_pair(u, g, 'normal_left_empty')} | "
            f"{u['n_lesion']} | {_share(u['lesion_left_empty'], u['lesion_left_empty_ci95'])} | "
            f"{_share(g['lesion_left_empty'], g['lesion_left_empty_ci95'])} | "
            f"{_dice(u['lesion_dice'], u['lesion_dice_ci95'])} | {_dice(g['lesion_dice'], g['lesion_dice_ci95'])} |"
        )
    lines += [
        "",
        "How well each run's maps separate normal from lesion images (validation fold; the image-level AUC of a "
        "statistic of the map, and the share of lesion images above the statistic's 90th percentile on normal "
        "images), mean over the folds run:",
        "",
        "| candidate | seed | folds | " + " | ".join(STATISTICS) + " |",
        "|---|---|---|" + "---|" * len(STATISTICS),
    ]
    with_maps = {k: [r for r in rows if "separability" in r] for k, rows in groups.items()}
    for (cand, seed), rows in ((k, v) for k, v in with_maps.items() if v):
        cells = []
        for name in STATISTICS:
            auc = np.mean([r["separability"]["statistics"][name]["auc"] for r in rows])
            sens = np.mean([r["separability"]["statistics"][name]["sensitivity_at_90_specificity"] for r in rows])
            cells.append(f"AUC {auc:.3f}, {sens:.0%} at 90% specificity")
        lines.append(f"| {cand} | {seed} | {', '.join(str(r['fold']) for r in rows)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "The gate's trade-off: its fit allows at most a budget of the lesion images to be emptied (5% by default); "
        "each budget cross-fitted as above, pooled over the folds run:",
        "",
        "| candidate | seed | folds | " + " | ".join(f"budget {b:.0%}" for b in BUDGETS) + " |",
        "|---|---|---|" + "---|" * len(BUDGETS),
    ]
    for (cand, seed), rows in ((k, v) for k, v in with_maps.items() if v):
        cells = []
        for i, _ in enumerate(BUDGETS):
            b = [r["separability"]["budgets"][i] for r in rows]
            ne, nn = sum(x["normal_empty"] for x in b), sum(x["n_normal"] for x in b)
            le, nl = sum(x["lesion_empty"] for x in b), sum(x["n_lesion"] for x in b)
            dice = sum(x["lesion_dice_sum"] for x in b) / nl
            cells.append(f"normals {ne}/{nn}, lesions {le}/{nl}, Dice {dice:.3f}")
        lines.append(f"| {cand} | {seed} | {', '.join(str(r['fold']) for r in rows)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Candidates: " + "; ".join(f"`{c}`: {' '.join(f) or 'the defaults'}" for c, f in CANDIDATES.items()) + ".",
        "",
    ]
    return "\n".join(lines)


def _previous(path: Path) -> list[dict]:
    return json.loads(path.read_text())["runs"] if path.is_file() else []


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), default=["baseline"], help="what to train")
    p.add_argument("--folds", type=int, nargs="+", default=[0], help="folds of the grouped splits (one run each)")
    p.add_argument("--epochs", type=int, default=20, help="epochs per run (protocol: 20, train.py's default)")
    p.add_argument("--seed", type=int, default=0, help="train.py --seed")
    p.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "datasets" / "Dataset_BUSI_with_GT")
    p.add_argument("--project", type=Path, default=REPO / "benchmarks" / "runs" / "lesion_gate", help="run folders")
    add_output_args(p, SECTION)
    p.add_argument("--no-markdown", action="store_true", help="do not touch BENCHMARKS.md (smoke runs)")
    p.add_argument(
        "--no-train", action="store_true", help="only (re)read the runs that exist, e.g. after the report changed"
    )
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.from_json:
        from _common import render_from_json

        render_from_json(args, SECTION, markdown)
        return 0
    if data_dir_missing(args):
        return 2
    command = command_line("lesion_gate.py", argv)
    protocol = (
        f"train.py --task seg defaults (U-Net, BCE + Dice, {args.epochs} epochs, 96 px on CPU, light augmentation), "
        "BUSI all three classes, one grouped fold per run"
    )
    trained_at = {(r["candidate"], r["fold"], r["seed"]): r["commit"] for r in _previous(args.json)}
    runs = []
    for candidate in args.candidates:
        for fold in args.folds:
            commit = head_commit()
            t0 = time.perf_counter()
            if args.no_train:
                run_dir = run_dir_of(args, candidate, fold)
                if not (run_dir / "metrics.json").is_file():
                    continue
                commit = trained_at.get((candidate, fold, args.seed), commit)  # the code it was trained at
            else:
                run_dir = train_one(args, candidate, fold)
            row = {"candidate": candidate, "fold": fold, "seed": args.seed, **read_run(run_dir, args.data_dir)}
            row["commit"] = commit
            row["wall_seconds"] = time.perf_counter() - t0
            runs.append(row)
            result = {
                "command": command,
                "protocol": protocol,
                "date": time.strftime("%Y-%m-%d"),
                "cpu": cpu_info(),
                "runs": runs,
            }
            save_runs(args, SECTION, result, KEY, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
