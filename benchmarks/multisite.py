"""Training on two sites at once (BUSI + BUS-BRA) against each site's single-site model, on the same patients.

Protocol: ``--tasks seg`` trains one U-Net with ``train.py``'s segmentation defaults
(96 px on a CPU-only machine, BCE + Dice, light augmentation, 20 epochs, benign and
malignant images) on BUSI and BUS-BRA together (``--data-dir BUSI=... BUS-BRA=...``);
``--tasks cls`` trains one EfficientNet-B0 with the classification defaults on all
three classes (BUS-BRA adds benign and malignant images only). Its folds
are not made anew: fold k joins fold k of each site's own grouped splits (the
splits the single-site runs of ``external.py`` used), so every held-out patient of a
site is held out by that site's single-site model too (training images that the
duplicate search groups with a held-out image of the other site are left out of
training: :func:`data.splits.drop_grouped_with_val`), and the combined model's
per-site figures (``per_site`` in its metrics.json) are compared with the single-site
model's internal ones on exactly the same images: Dice, or malignant-vs-benign AUC and
the share of lesion images called normal.

The single-site rows are read from ``external.py``'s run folders
(``--single-project``, recipe ``baseline``, same fold and seed), which must exist.
One (fold, seed) per invocation is fine: results merge into ``--json`` and the
section is re-rendered. Datasets: BUSI (Al-Dhabyani et al., Data in Brief 28:104863,
2020) and BUS-BRA (Gomez-Flores et al., Medical Physics 51(4):3110-3123, 2024).

Usage:
    python benchmarks/multisite.py --folds 0 --seeds 0
    python benchmarks/multisite.py --tasks cls --folds 0 --seeds 0
    python benchmarks/multisite.py --from-json benchmarks/results/multisite.json
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

from _common import REPO, add_output_args, command_line, head_commit, render_from_json, save_runs, write_json
from external import BUSI_DIR, add_site_args, busbra_manifest, datasets_missing, run_dir_of
from train_step import cpu_info

SECTION = "multisite"
KEY = ("task", "fold", "seed")
SINGLE_DIRECTION = {"BUSI": "busi", "BUS-BRA": "busbra"}
"""Each site's name here and its direction in ``external.py`` (the single-site run trained on it)."""


def joined_splits(site_splits: dict[str, Path], fold: int) -> dict:
    """A one-fold splits document: fold ``fold`` of each site's splits, ids namespaced ``SITE/id``.

    Raises:
        ValueError: If a site's splits have no fold ``fold``.
    """
    train: list[str] = []
    val: list[str] = []
    excluded: list[str] = []
    for site, path in site_splits.items():
        doc = json.loads(path.read_text())
        if fold >= len(doc["folds"]):
            raise ValueError(f"{path} has {len(doc['folds'])} folds; fold {fold} asked")
        train += [f"{site}/{i}" for i in doc["folds"][fold]["train"]]
        val += [f"{site}/{i}" for i in doc["folds"][fold]["val"]]
        excluded += [f"{site}/{i}" for i in doc.get("excluded", [])]
    return {"folds": [{"train": train, "val": val}], "excluded": excluded, "test": []}


def single_run(args: argparse.Namespace, task: str, site: str, fold: int, seed: int) -> Path:
    """The single-site ``task`` run of ``site`` in ``external.py``'s folders.

    Raises:
        FileNotFoundError: If it has not been run.
    """
    ns = argparse.Namespace(project=args.single_project)
    run = run_dir_of(ns, "baseline", task, SINGLE_DIRECTION[site], fold, seed)
    if not (run / "metrics.json").is_file():
        raise FileNotFoundError(
            f"single-site run {run} not found: run `python benchmarks/external.py --recipes baseline --tasks {task} "
            f"--directions {SINGLE_DIRECTION[site]} --folds {fold} --seeds {seed}` first"
        )
    return run


@functools.cache
def cross_site_groups(busi: Path, manifest: Path) -> dict[str, str]:
    """Every case id of the two sites -> its group, duplicates searched across them (read once per invocation)."""
    from data.report import InspectOptions, analyze_dataset

    return analyze_dataset([f"BUSI={busi}", f"BUS-BRA={manifest}"], InspectOptions()).groups


def train_joint(args: argparse.Namespace, task: str, fold: int, seed: int) -> Path:
    """Train (unless complete; resume if interrupted) the two-site ``task`` model of ``fold`` and ``seed``."""
    run_dir = args.project / task / f"busi+busbra-{task}-f{fold}-s{seed}"
    if (run_dir / "metrics.json").is_file():
        return run_dir
    from data.splits import drop_grouped_with_val

    manifest = busbra_manifest(args.project, args.busbra)
    site_splits = {
        "BUSI": args.single_project / "data" / BUSI_DIR.name / "splits.json",
        "BUS-BRA": args.single_project / "data" / "BUS-BRA" / "splits.json",
    }
    for path in site_splits.values():
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: the single-site runs of external.py write it")
    doc = drop_grouped_with_val(joined_splits(site_splits, fold), cross_site_groups(args.busi, manifest))
    if doc["dropped"]:
        print(f"left out of training, grouped with a held-out image of the other site: {doc['dropped']}")
    splits = args.project / "splits" / f"busi+busbra-f{fold}.json"
    write_json(splits, doc)
    cmd = [
        sys.executable, "train.py", "--task", task, *(["--classes", "benign", "malignant"] if task == "seg" else []),
        "--data-dir", f"BUSI={args.busi}", f"BUS-BRA={manifest}", "--splits", str(splits), "--fold", "0",
        "--seed", str(seed), "--no-export", "--augment", "light", "--channels", "3",
        "--project", str(args.project), "--name", run_dir.name, "--exist-ok",
        *(["--resume", str(run_dir)] if (run_dir / "config.json").is_file() else []),
    ]  # fmt: skip
    print(f"== two sites, {task}, fold {fold} seed {seed}: {' '.join(cmd[1:])}", flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)
    return run_dir


SITE_FIGURES = {
    "seg": {"dice": "dice", "below_0.5": None},
    "cls": {"malignant_auc": "malignant_auc", "lesion_called_normal": "lesion_called_normal"},
}
"""Per task: each site figure compared (the first with its interval, the second a share), and the key of the
single-site run's metrics.json holding it (None: computed from its per-image rows)."""
TABLES = {
    "seg": ("Segmentation (U-Net):", "Dice", "below 0.5"),
    "cls": (
        "Classification (EfficientNet-B0; BUSI's single-site model has three classes, BUS-BRA's two):",
        "AUC m vs b",
        "lesions called normal",
    ),
}
"""Per task: the BENCHMARKS.md table's title, and the names of its two figures."""


def _single_figure(single: dict, key: str, source: str | None) -> float:
    if source is None:  # the share of images below Dice 0.5
        return sum(r["dice"] < 0.5 for r in single["per_image"]) / len(single["per_image"])
    return single[source]


def read_row(args: argparse.Namespace, task: str, run_dir: Path, fold: int, seed: int) -> dict:
    """Per-site figures of the two-site model and each single-site model's on the same held-out images.

    Raises:
        ValueError: If the two runs did not hold out the same number of a site's images.
    """
    metrics = json.loads((run_dir / "metrics.json").read_text())
    sites = {}
    for site in SINGLE_DIRECTION:
        joint = metrics["per_site"][site]
        single = json.loads((single_run(args, task, site, fold, seed) / "metrics.json").read_text())
        if single["n_images"] != joint["n"]:
            raise ValueError(
                f"{site}: the two-site run held out {joint['n']} images, the single-site run {single['n_images']}"
            )
        sites[site] = {"n": joint["n"]}
        for key, source in SITE_FIGURES[task].items():
            sites[site][f"joint_{key}"] = joint[key]
            sites[site][f"single_{key}"] = _single_figure(single, key, source)
            if source is not None:
                sites[site][f"joint_{key}_ci95"] = joint[f"{key}_ci95"]
                sites[site][f"single_{key}_ci95"] = single[f"{source}_ci95"]
    headline = "dice" if task == "seg" else "macro_auc"
    return {
        "task": task,
        "fold": fold,
        "seed": seed,
        "train_cases": metrics["train_cases"],
        "dropped": json.loads((run_dir / "splits.json").read_text()).get("dropped", []),
        "best_epoch": metrics["best_epoch"],
        headline: metrics[headline],
        f"{headline}_ci95": metrics[f"{headline}_ci95"],
        "sites": sites,
    }


def _ci(v: float, ci: list[float]) -> str:
    return f"{v:.3f} ({ci[0]:.3f}-{ci[1]:.3f})"


def markdown(result: dict) -> str:
    """The BENCHMARKS.md section: a table per task."""
    cpu = result["cpu"]
    lines = [
        "## Two sites in one model: BUSI + BUS-BRA against each single-site model (issue 21)",
        "",
        *[f"Command: `{c}`  " for c in result["commands"]],
        f"Machine: {cpu['model']}, {cpu['cores']} cores. Date: {result['date']}. {result['protocol']}",
    ]
    runs = sorted(result["runs"], key=lambda r: (r["fold"], r["seed"]))
    for task, (title, figure, share) in TABLES.items():
        if not any(r["task"] == task for r in runs):
            continue
        main, below = SITE_FIGURES[task]
        lines += [
            "",
            title,
            "",
            f"| fold | seed | site (held-out images) | two-site model, {figure} | single-site model, {figure} | "
            f"difference | {share}, two-site / single | code |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in (r for r in runs if r["task"] == task):
            for site, s in r["sites"].items():
                joint, single = s[f"joint_{main}"], s[f"single_{main}"]
                lines.append(
                    f"| {r['fold']} | {r['seed']} | {site} ({s['n']}) | {_ci(joint, s[f'joint_{main}_ci95'])} | "
                    f"{_ci(single, s[f'single_{main}_ci95'])} | {joint - single:+.3f} | "
                    f"{100 * s[f'joint_{below}']:.1f}% / {100 * s[f'single_{below}']:.1f}% | {r.get('commit', '')} |"
                )
    return "\n".join([*lines, ""])


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_site_args(p, REPO / "benchmarks" / "runs" / "multisite")
    p.add_argument("--tasks", nargs="+", choices=list(SITE_FIGURES), default=["seg"])
    p.add_argument(
        "--single-project",
        type=Path,
        default=REPO / "benchmarks" / "runs" / "external",
        help="external.py's run folders (the single-site runs and their splits)",
    )
    add_output_args(p, SECTION)
    p.add_argument("--no-markdown", action="store_true", help="do not touch BENCHMARKS.md")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if render_from_json(args, SECTION, markdown):
        return 0
    if datasets_missing(args):
        return 2
    args.project, args.single_project = args.project.resolve(), args.single_project.resolve()
    protocol = (
        "train.py defaults (U-Net on benign and malignant images, 96 px; EfficientNet-B0 on all three classes, "
        "128 px; 20 epochs, light augmentation), images of both sites; fold k joins fold k of each site's grouped "
        "splits. Dice per image (mean), or malignant-vs-benign AUC from P(malignant) on the lesion images, on each "
        "site's held-out images, 95% intervals over patients."
    )
    for task, fold, seed in itertools.product(args.tasks, args.folds, args.seeds):
        for site in SINGLE_DIRECTION:
            single_run(args, task, site, fold, seed)  # fail before hours of training
        run_dir = train_joint(args, task, fold, seed)
        row = {**read_row(args, task, run_dir, fold, seed), "commit": head_commit()}
        result = {
            "command": command_line("multisite.py", argv),
            "protocol": protocol,
            "cpu": cpu_info(),
            "date": time.strftime("%Y-%m-%d"),
            "runs": [row],
        }
        save_runs(args, SECTION, result, KEY, markdown)
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
