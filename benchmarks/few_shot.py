"""Adapting a run to a new site from k of its patients: learning curves for any source run and any site.

Protocol: the site (a manifest or a folder) is split with the project's grouped folds; fold 0's
validation cases are held out and never trained on. From the rest, one seeded shuffle per draw orders
the site's units (patients when the site is a manifest with a ``group`` column; otherwise BUSI-like
duplicate groups stand in for patients and k counts images, whole groups taken until k is reached).
The first k units are the adaptation set (nested: the 50 include the 20), split by unit into training
(four in five) and the run's validation fold (every fifth unit, at least one). Each arm trains on it:

- ``adapt``: ``train.py --adapt SOURCE``, the recipe (encoder frozen for ``--freeze-epochs``, normalization
  training; then all layers at lr/10; the rules fitted where the data support them);
- ``adapt-all``: ``--adapt`` with every layer training at the source's rate from the start;
- ``adapt-lowlr``: ``--adapt`` with every layer at lr 1e-4 from the start;
- ``adapt-oversample``: ``--adapt --oversample`` (the classes drawn equally often, normal images among them);
- ``finetune``: the source's weights with ``--weights`` and train.py's defaults, its rules fitted on
  whatever validation fold it has (what the README said before ``--adapt``);
- ``scratch``: the same architecture from random weights;
- ``refit-cut`` (classifiers and joint models): no training; the source model's malignancy cut is chosen
  again, for the source run's ``--target-sensitivity``, on its own answers for the k units' images: how
  many labelled patients of the site it takes to bring the sensitivity at the cut back to its target.

k = 0 is the source model as it is (``unadapted``). Every run is scored with ``evaluate.py --data-dir
SITE`` and its figures are taken on the held-out cases only: lesion Dice, lesion images missed (left
empty), normal images left empty (segmentation and joint), malignant-vs-benign AUC, sensitivity and
specificity at the run's cut, lesion images and normal images called normal (classification and joint),
each with a 95% interval (Wilson for images missed, left empty or normal called normal; bootstrap over
patients for the rest). One (arm, k, draw) per run folder; results merge into ``--json`` and the section
(one table per task, :data:`TASK_FIGURES` its columns) is re-rendered after each.

Usage:
    python benchmarks/few_shot.py --source RUN --site MANIFEST_OR_FOLDER --sizes 0 20 50 100 200 --draws 0 1 2
    python benchmarks/few_shot.py --from-json benchmarks/results/adaptation.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
from _common import REPO, add_output_args, command_line, head_commit, render_from_json, save_runs, write_json
from few_shot_report import FIGURES, TASK_FIGURES, markdown, plot, summary  # noqa: F401 (the tests' names)
from train_step import cpu_info

sys.path.insert(0, str(REPO))

SECTION = "adaptation"
KEY = ("task", "source", "site", "arm", "k", "draw")
ARMS = ("adapt", "adapt-all", "adapt-lowlr", "adapt-oversample", "finetune", "scratch", "refit-cut")


def site_draws(site: Path, project: Path, sizes: list[int], draw: int) -> tuple[dict[int, dict], dict]:
    """A splits document per k (the adaptation set's training and validation units) and what the site holds.

    Returns:
        The documents by k, and ``held`` (held-out ids), ``groups`` and ``labels`` (by id) and ``unit``.

    Raises:
        ValueError: If k exceeds what the site has for adaptation.
    """
    from data.report import InspectOptions, analyze_dataset, dataset_out_dir

    analysis = analyze_dataset(
        site, InspectOptions(), existing_splits=dataset_out_dir(f"site={site}", project) / "splits.json"
    )
    held = sorted(analysis.splits["folds"][0]["val"])
    pool = sorted(analysis.splits["folds"][0]["train"])
    groups = analysis.groups
    unit = "patients" if site.suffix == ".csv" else "images"
    members: dict[str, list[str]] = {}
    for i in pool:
        members.setdefault(groups[i], []).append(i)
    order = [sorted(members)[j] for j in np.random.default_rng(draw).permutation(len(members))]
    docs = {}
    for k in [k for k in sizes if k > 0]:
        chosen, count = [], 0
        for g in order:
            if count >= k:
                break
            chosen.append(g)
            count += 1 if unit == "patients" else len(members[g])
        if count < k:
            raise ValueError(f"`--sizes`: {k} {unit} asked, {count} available for adaptation in {site}")
        val_groups = set(chosen[4::5]) or {chosen[-1]}
        docs[k] = {
            "excluded": analysis.splits["excluded"],
            "test": [],
            "folds": [{"train": [i for g in chosen if g not in val_groups for i in members[g]],
                       "val": [i for g in chosen if g in val_groups for i in members[g]]}],
            "few_shot": {"k": k, "unit": unit, "draw": draw},
        }  # fmt: skip
    labels = {i: c.label for i, c in analysis.cases.items()}
    return docs, {"held": held, "groups": groups, "labels": labels, "unit": unit}


def arm_flags(arm: str, source: Path) -> list[str]:
    """train.py's flags of ``arm`` for the source run (fold folder) ``source``."""
    from config.train import TrainConfig
    from evaluation.run_files import resolve_run
    from training.adapt import ARCHITECTURE, flag

    if arm.startswith("adapt"):
        extra = {
            "adapt": [],
            "adapt-all": ["--freeze-epochs", "0"],
            "adapt-lowlr": ["--freeze-epochs", "0", "--lr", "1e-4"],
            "adapt-oversample": ["--oversample"],
        }
        return ["--adapt", str(source), *extra[arm]]
    cfg, weights = resolve_run(source)
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    always = ("task", "model", "img_size")
    arch = [[flag(k), str(getattr(cfg, k))] for k in ARCHITECTURE
            if getattr(cfg, k) is not None and (k in always or getattr(cfg, k) != defaults[k])]  # fmt: skip
    return [*(x for pair in arch for x in pair), "--weights", str(weights) if arm == "finetune" else "none"]


def run_one(args: argparse.Namespace, arm: str, k: int, draw: int, doc: dict) -> Path:
    """Train one arm on the adaptation set of (k, draw) unless its run is complete; return the run folder."""
    from evaluation.run_files import resolve_run

    task = resolve_run(args.source)[0].task
    name = f"{arm}-k{k}-d{draw}"
    run_dir = args.project / task / name
    if (run_dir / "metrics.json").is_file():
        return run_dir
    split_file = write_json(args.project / "splits" / f"k{k}-d{draw}.json", doc)
    cmd = [
        sys.executable, "train.py", *arm_flags(arm, args.source), "--data-dir", f"site={args.site}",
        "--splits", str(split_file), "--fold", "0", "--seed", str(draw), "--no-export",
        "--project", str(args.project), "--name", name, "--exist-ok",
        *(["--epochs", str(args.epochs)] if args.epochs else []),
        *(["--resume", str(run_dir)] if (run_dir / "config.json").is_file() else []),
    ]  # fmt: skip
    print(f"== {arm}, k={k}, draw {draw}: {' '.join(cmd[1:])}", flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)
    return run_dir


def scored_on_site(run_dir: Path, site: Path) -> Path:
    """``evaluate.py --run RUN --data-dir site=SITE`` (once); the folder it wrote."""
    out = run_dir / "eval" / "site-all"
    if not (out / "metrics.json").is_file():
        cmd = [sys.executable, "evaluate.py", "--run", str(run_dir), "--data-dir", f"site={site}"]
        subprocess.run(cmd, cwd=REPO, check=True)
    return out


def seg_figures(per_image: list[dict], held: set[str], groups: dict[str, str]) -> dict:
    """Lesion Dice, lesion images missed and normal images left empty on the held-out cases, with intervals."""
    from reports.stats import group_bootstrap_ci, wilson_ci

    rows = [r for r in per_image if r["id"] in held]
    lesion = [r for r in rows if r["label"] != "normal"]
    normal = [r for r in rows if r["label"] == "normal"]
    out: dict = {"held_out_images": len(rows)}
    if lesion:
        dice = np.array([r["dice"] for r in lesion])
        missed = sum(r["empty"] for r in lesion)
        lesion_groups = np.array([groups[r["id"]] for r in lesion])
        out.update(lesion_dice=float(dice.mean()), lesion_dice_ci95=list(group_bootstrap_ci(dice, lesion_groups)))
        out.update(lesion_missed=missed / len(lesion), lesion_missed_ci95=list(wilson_ci(missed, len(lesion))))
    if normal:
        empty = sum(r["empty"] for r in normal)
        out.update(normal_empty=empty / len(normal), normal_empty_ci95=list(wilson_ci(empty, len(normal))))
    return out


def cls_figures(out_dir: Path, held: set[str], groups: dict[str, str], cut: float | None) -> dict:
    """Malignant-vs-benign AUC, sensitivity and specificity at the run's ``cut``, lesion images called normal and
    normal images called normal, on the held-out cases of ``out_dir``'s predictions."""
    from core.classes import CLASS_NAMES
    from evaluation.cls import PREDICTIONS_NAME, read_predictions
    from metrics.classification import malignancy_report
    from reports.stats import wilson_ci

    ids, labels, probs = read_predictions(out_dir / PREDICTIONS_NAME)
    keep = [j for j, i in enumerate(ids) if i in held]
    report = malignancy_report([CLASS_NAMES[labels[j]] for j in keep], probs[keep], CLASS_NAMES,
                               [groups[ids[j]] for j in keep], cut)  # fmt: skip
    keys = ("malignant_auc", "sensitivity", "specificity", "lesion_called_normal")
    out = {k2: v for k2, v in report.items() if k2 in keys or k2.removesuffix("_ci95") in keys}
    normal = [j for j in keep if CLASS_NAMES[labels[j]] == "normal"]
    if normal:
        called = int(sum(CLASS_NAMES[int(np.argmax(probs[j]))] == "normal" for j in normal))
        out["normal_called_normal"] = called / len(normal)
        out["normal_called_normal_ci95"] = list(wilson_ci(called, len(normal)))
    return out


def refit_cut(out_dir: Path, ids: set[str], target: float) -> float | None:
    """The malignancy cut chosen on ``out_dir``'s predictions of the images ``ids`` for ``target`` sensitivity
    (:func:`evaluation.cut.choose_cut`); None when they lack benign or malignant images."""
    from core.classes import CLASS_NAMES
    from evaluation.cls import PREDICTIONS_NAME, read_predictions
    from evaluation.cut import choose_cut

    got, labels, probs = read_predictions(out_dir / PREDICTIONS_NAME)
    keep = [j for j, i in enumerate(got) if i in ids]
    names = np.array([CLASS_NAMES[labels[j]] for j in keep])
    return choose_cut(names, probs[keep, CLASS_NAMES.index("malignant")], np.ones(len(keep), bool), target)


def score(run_dir: Path, site: Path, info: dict, refit_on: set[str] | None = None) -> dict:
    """The held-out figures of a run (or the unadapted source); with ``refit_on``, at the cut chosen again on
    those images (:func:`refit_cut`) instead of the run's (``cut``: the one used)."""
    from evaluation.run_files import resolve_run

    cfg = resolve_run(run_dir)[0]
    task = cfg.task
    out = scored_on_site(run_dir, site)
    held, groups = set(info["held"]), info["groups"]
    metrics = json.loads((out / "metrics.json").read_text())  # a joint run's: its "seg" and "cls" parts
    figures: dict = {}
    if task in ("seg", "joint"):
        figures.update(seg_figures(metrics.get("seg", metrics)["per_image"], held, groups))
    if task in ("cls", "joint"):
        where = out / "cls" if task == "joint" else out
        cut = metrics.get("cls", metrics).get("malignancy_threshold")
        if refit_on is not None:
            cut = refit_cut(where, refit_on, cfg.target_sensitivity)
        figures.update(cls_figures(where, held, groups, cut), cut=cut)
    return figures


def run_facts(run_dir: Path) -> dict:
    """Training images, validation images and where the run's rules came from."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    parts = [metrics, metrics.get("seg", {}), metrics.get("cls", {})]
    bases = {}
    for name in ("lesion_gate", "calibration", "malignancy_cut"):
        found = next((p[name] for p in parts if isinstance(p.get(name), dict)), None)
        if found and found.get("basis"):
            bases[name] = found["basis"]["fitted_on"]
    return {"train_images": metrics["train_cases"], "val_images": metrics["val_cases"], "rules": bases}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--source", type=Path, help="the run (or one fold of it) to adapt")
    p.add_argument("--site", type=Path, help="the new site: a manifest (patients in `group`) or a folder")
    p.add_argument("--sizes", type=int, nargs="+", default=[0, 20, 50, 100, 200], help="k: patients or images")
    p.add_argument("--draws", type=int, nargs="+", default=[0], help="seeds of the draws (and of training)")
    p.add_argument("--arms", nargs="+", choices=ARMS, default=["adapt", "finetune", "scratch"])
    p.add_argument("--epochs", type=int, default=0, help="epochs of every arm (default: train.py's)")
    p.add_argument("--project", type=Path, default=REPO / "benchmarks" / "runs" / "few_shot", help="run folders")
    add_output_args(p, SECTION)
    p.add_argument("--no-markdown", action="store_true", help="do not touch BENCHMARKS.md")
    return p.parse_args(argv)


def _row(args: argparse.Namespace, arm: str, k: int, draw: int, run_dir: Path, info: dict, doc: dict | None) -> dict:
    from data.sources import dataset_name
    from evaluation.run_files import resolve_run

    source = args.source.resolve()
    names = {"source": source.parent.name if source.name.startswith("fold") else source.name,
             "site": dataset_name(args.site)}  # fmt: skip
    refit = {i for part in ("train", "val") for i in doc["folds"][0][part]} if arm == "refit-cut" else None
    facts = {"train_images": 0, "val_images": len(refit or ()), "rules": {}}
    if arm not in ("unadapted", "refit-cut"):
        facts = run_facts(run_dir)
    elif refit:
        facts["rules"] = {"malignancy_cut": f"chosen again on the {k} {info['unit']}' {len(refit)} images"}
    return {"task": resolve_run(run_dir)[0].task, **names, "arm": arm, "k": k, "draw": draw, "unit": info["unit"],
            **facts, **score(run_dir, args.site, info, refit), "commit": head_commit()}  # fmt: skip


def main(argv=None) -> int:
    args = parse_args(argv)
    if render_from_json(args, SECTION, markdown):
        plot(json.loads(args.from_json.read_text()))
        return 0
    if args.source is None or args.site is None:
        print("error: --source and --site are needed (or --from-json)", file=sys.stderr)
        return 2
    if not args.site.exists():
        print(f"error: `--site` not found: {args.site}", file=sys.stderr)
        return 2
    args.project, args.site = args.project.resolve(), args.site.resolve()
    protocol = (
        "Held out: the site's fold 0 (grouped). Adaptation sets nested over k within a draw; "
        f"epochs: {args.epochs or 'train.py default'}; evaluate.py on the site, held-out cases kept."
    )
    for draw in args.draws:
        docs, info = site_draws(args.site, args.project, args.sizes, draw)
        jobs = [("unadapted", 0)] if 0 in args.sizes and draw == args.draws[0] else []  # the same for every draw
        jobs += [(arm, k) for k in sorted(docs) for arm in args.arms]
        for arm, k in jobs:
            trained = arm not in ("unadapted", "refit-cut")
            run_dir = run_one(args, arm, k, draw, docs[k]) if trained else args.source
            row = _row(args, arm, k, draw, run_dir, info, docs.get(k))
            result = {"command": command_line("few_shot.py", argv), "protocol": protocol, "cpu": cpu_info(),
                      "date": time.strftime("%Y-%m-%d"), "runs": [row]}  # fmt: skip
            merged = save_runs(args, SECTION, result, KEY, markdown)
            plot(merged)
            print(json.dumps({k2: v for k2, v in row.items() if not k2.endswith("_ci95")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
