"""One architecture from ImageNet and from scratch, beside the scratch defaults: trained on BUSI, scored on BUS-BRA.

Protocol: ``train.py``'s own defaults, as a user runs them (20 epochs, batch 8, Adam 1e-3 with cosine
decay, light augmentation, early stopping after 10 epochs without gain, the task's default losses;
with ``--weights imagenet`` the encoder frozen for 3 epochs, then every layer at 1e-4), on BUSI's
duplicate-grouped folds (``--folds``, of the dataset's 5), all three classes, float32, seed 0, no
export; scored by ``train.py`` itself on the best epoch, on the validation fold and on all of BUS-BRA
(``--external``, benign and malignant). Arms per task:

- ``cls``: ``efficientnet_lite0`` from ImageNet and from scratch; ``efficientnet_b0`` from scratch
  (the default before this benchmark made Lite0 from ImageNet the default). Sizes ``--cls-sizes`` (224 and 128 px).
- ``seg`` and ``joint``: ``efficientnet_lite0_unet`` from ImageNet and from scratch; ``unet`` from
  scratch (the default), at the U-Net's CPU protocol size (96 px).

Reported per run, with 95% intervals bootstrapped over patients: classification's macro AUC and
F1, malignant-vs-benign AUC, the share of lesion images called normal, sensitivity and specificity
at the malignancy cut fitted on the validation fold, internal and on BUS-BRA; segmentation's lesion
Dice, normal images left empty and lesion images left empty (internal), lesion Dice on BUS-BRA;
parameters, forward GFLOPs per image, training images/s (epochs after the first) and wall time.
Paired over the folds run: ImageNet minus scratch, and ImageNet minus the scratch default. Per task
and size, a table of issue 36's targets: each arm's fold mean, whether the ImageNet arm meets the
bar, and on how many folds it is ahead of its own scratch arm.

One (task, arm, size, fold) is one ``train.py`` process; a run folder with ``metrics.json`` is read,
not trained again, and each row merges into ``--json`` when it finishes, so the work can be cut
into pieces that each fit a session.

Datasets: BUSI (Al-Dhabyani et al., Data in Brief 28:104863, 2020) and BUS-BRA (Gomez-Flores et al.,
Medical Physics 51(4):3110-3123, 2024).

Usage:
    python benchmarks/pretrained.py --tasks cls --cls-sizes 128 --folds 0
    python benchmarks/pretrained.py --tasks seg joint --folds 0 1 2
    python benchmarks/pretrained.py --from-json benchmarks/results/pretrained.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import (
    REPO,
    add_output_args,
    busi_and_busbra_missing,
    command_line,
    head_commit,
    model_cost,
    protocol_for,
    render_from_json,
    save_runs,
)
from train_step import cpu_info

SECTION = "pretrained"
SHARED = REPO.parent / "shared" / "datasets"
ARMS: dict[str, list[tuple[str, str]]] = {
    "cls": [("efficientnet_lite0", "imagenet"), ("efficientnet_lite0", "none"), ("efficientnet_b0", "none")],
    "seg": [("efficientnet_lite0_unet", "imagenet"), ("efficientnet_lite0_unet", "none"), ("unet", "none")],
    "joint": [("efficientnet_lite0_unet", "imagenet"), ("efficientnet_lite0_unet", "none"), ("unet", "none")],
}
"""Task -> its (model, weights) arms: the ImageNet model, the same from scratch, the scratch default."""
SEG_SIZE = 96
KEY = ("task", "model", "weights", "img_size", "fold")
PROTOCOL = (
    "train.py defaults (20 epochs, batch 8, Adam 1e-3 cosine, light augmentation, patience 10; ImageNet: "
    "3 frozen epochs then lr/10), BUSI grouped folds, 3 classes, float32, seed 0; BUS-BRA external"
)
EXTERNAL = "BUS-BRA"


def run_dir(args: argparse.Namespace, task: str, model: str, weights: str, size: int, fold: int) -> Path:
    """Where one run lives."""
    return Path(args.project) / task / f"{model}-{weights}-{size}px-f{fold}"


def train_cmd(args: argparse.Namespace, task: str, model: str, weights: str, size: int, fold: int) -> list[str]:
    """The ``train.py`` command of one run: the defaults, with the arm, size, fold and external site."""
    folder = run_dir(args, task, model, weights, size, fold)
    return [
        sys.executable, "train.py", "--task", task, "--model", model, "--weights", weights,
        "--data-dir", str(args.busi), "--fold", str(fold), "--img-size", str(size), "--epochs", str(args.epochs),
        "--mixed-precision", "off", "--no-export", "--seed", "0", "--target-sensitivity", "0",
        "--external", f"{EXTERNAL}={args.busbra / 'manifest.csv'}",
        "--project", str(folder.parent.parent), "--name", folder.name, "--exist-ok",
    ]  # fmt: skip


def _pick(d: dict, keys: tuple[str, ...]) -> dict:
    out = {}
    for k in keys:
        if k in d:
            out[k] = d[k]
            if f"{k}_ci95" in d:
                out[f"{k}_ci95"] = d[f"{k}_ci95"]
    return out


CLS_KEYS = ("macro_auc", "macro_f1", "malignant_auc", "lesion_called_normal", "sensitivity", "specificity")
SEG_KEYS = ("lesion_dice", "normal_left_empty", "lesion_left_empty")


def read_row(task: str, folder: Path) -> dict:
    """Internal and external figures of one finished run, and its training speed."""
    m = json.loads((folder / "metrics.json").read_text())
    ext = m.get("external", {}).get(EXTERNAL, {})
    row: dict = {"best_epoch": m["best_epoch"], "epochs_completed": m["epochs_completed"]}
    if task != "cls":
        row["internal_seg"] = _pick(m["seg"] if task == "joint" else m, SEG_KEYS)
        row["external_seg"] = _pick(ext.get("seg", ext) if task == "joint" else ext, ("lesion_dice",))
    if task != "seg":
        row["internal_cls"] = _pick(m["cls"] if task == "joint" else m, CLS_KEYS)
        row["external_cls"] = _pick(ext.get("cls", ext) if task == "joint" else ext, CLS_KEYS)
    with open(folder / "history.csv", newline="") as f:
        rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    timed = rows[1:] or rows
    row["train_images_per_second"] = m["train_cases"] * len(timed) / sum(r["train_seconds"] for r in timed)
    return row


def run_one(args: argparse.Namespace, task: str, model: str, weights: str, size: int, fold: int) -> dict:
    """Train one run unless it has finished, and read its row."""
    folder = run_dir(args, task, model, weights, size, fold)
    t0 = time.perf_counter()
    trained = not (folder / "metrics.json").is_file()
    before = {} if trained else _previous_row(args, (task, model, weights, size, fold))
    if trained:
        cmd = train_cmd(args, task, model, weights, size, fold)
        print(f"== {task} {model} {weights} {size}px fold {fold}: {' '.join(cmd[1:])}", flush=True)
        subprocess.run(cmd, cwd=REPO, check=True)
    else:
        print(f"== {task} {model} {weights} {size}px fold {fold}: reading the finished run {folder}", flush=True)
    options = {"joint_classes": 3} if task == "joint" else {}
    row = {"task": task, "model": model, "weights": weights, "img_size": size, "fold": fold, **read_row(task, folder)}
    row.update(model_cost(model, size, **options))
    if trained:
        row["wall_seconds"] = time.perf_counter() - t0
        row["load_average"] = os.getloadavg()[1]  # over the last 5 minutes: above 2, the 2 cores were shared
    else:  # what only the training invocation could see
        row.update({k: before[k] for k in ("wall_seconds", "load_average") if k in before})
    provenance = folder / "provenance.json"
    if provenance.is_file():
        commit = json.loads(provenance.read_text())["commit"]
    else:
        commit = head_commit() if trained else before.get("commit", "unknown")
    return {**row, "commit": commit, "cpu": cpu_info()["model"]}


def _previous_row(args: argparse.Namespace, key: tuple) -> dict:
    """The row ``--json`` holds for ``key`` (task, model, weights, size, fold), or an empty one."""
    previous = json.loads(args.json.read_text())["runs"] if args.json.is_file() else []
    return next((r for r in previous if tuple(r.get(k) for k in KEY) == key), {})


def _fmt(d: dict, key: str, pct: bool = False) -> str:
    if key not in d:
        return "—"
    v, ci = d[key], d.get(f"{key}_ci95")
    if pct:
        return f"{100 * v:.1f}%" + (f" ({100 * ci[0]:.1f}-{100 * ci[1]:.1f})" if ci else "")
    return f"{v:.3f}" + (f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else "")


def _arm(r: dict) -> str:
    return f"{r['model']} ({'ImageNet' if r['weights'] == 'imagenet' else 'scratch'})"


def paired(runs: list[dict], task: str, size: int, a: tuple, b: tuple, part: str, key: str) -> tuple[list, np.ndarray]:
    """Folds where arms ``a`` and ``b`` both ran, and ``a``'s figure minus ``b``'s on each."""
    by = {(r["model"], r["weights"], r["fold"]): r for r in runs if r["task"] == task and r["img_size"] == size}
    folds = sorted(f for m, w, f in by if (m, w) == a and (*b, f) in by)
    diffs = [by[(*a, f)].get(part, {}).get(key) for f in folds], [by[(*b, f)].get(part, {}).get(key) for f in folds]
    keep = [i for i, (x, y) in enumerate(zip(*diffs, strict=True)) if x is not None and y is not None]
    return [folds[i] for i in keep], np.array([diffs[0][i] - diffs[1][i] for i in keep])


def _task_lines(runs: list[dict], task: str) -> list[str]:
    lines = []
    for size in sorted({r["img_size"] for r in runs if r["task"] == task}, reverse=True):
        rows = sorted(
            (r for r in runs if r["task"] == task and r["img_size"] == size),
            key=lambda r: (r["fold"], ARMS[task].index((r["model"], r["weights"]))),
        )
        head, cells = ["arm", "fold"], []
        if task != "seg":
            head += ["macro AUC", "macro F1", "m-vs-b AUC", "sens / spec at the cut", "BUS-BRA m-vs-b AUC",
                     "BUS-BRA sens / spec", "BUS-BRA lesions called normal"]  # fmt: skip
        if task != "cls":
            head += ["lesion Dice", "normal left empty", "lesions left empty", "BUS-BRA lesion Dice"]
        head += ["params (M)", "GFLOPs", "train img/s", "wall (min)", "load"]
        lines += [f"**{task}, {size} px**", "", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for r in rows:
            cells = [_arm(r), str(r["fold"])]
            if task != "seg":
                i, e = r["internal_cls"], r["external_cls"]
                cells += [_fmt(i, "macro_auc"), _fmt(i, "macro_f1"), _fmt(i, "malignant_auc"),
                          f"{_fmt(i, 'sensitivity')} / {_fmt(i, 'specificity')}", _fmt(e, "malignant_auc"),
                          f"{_fmt(e, 'sensitivity')} / {_fmt(e, 'specificity')}",
                          _fmt(e, "lesion_called_normal", pct=True)]  # fmt: skip
            if task != "cls":
                i, e = r["internal_seg"], r["external_seg"]
                cells += [_fmt(i, "lesion_dice"), _fmt(i, "normal_left_empty", pct=True),
                          _fmt(i, "lesion_left_empty", pct=True), _fmt(e, "lesion_dice")]  # fmt: skip
            wall = f"{r['wall_seconds'] / 60:.1f}" if "wall_seconds" in r else "—"
            load = f"{r['load_average']:.1f}" if "load_average" in r else "—"
            cells += [
                f"{r['params'] / 1e6:.2f}",
                f"{r['gflops']:.2f}",
                f"{r['train_images_per_second']:.1f}",
                wall,
                load,
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", *_paired_lines(runs, task, size), "", *target_lines(runs, task, size)]
    return lines


def _paired_lines(runs: list[dict], task: str, size: int) -> list[str]:
    imagenet, scratch, default = ARMS[task]
    figures = []
    if task != "seg":
        figures += [("internal_cls", "macro_auc", "macro AUC"), ("external_cls", "malignant_auc", "BUS-BRA AUC")]
    if task != "cls":
        figures += [("internal_seg", "lesion_dice", "lesion Dice"), ("external_seg", "lesion_dice", "BUS-BRA Dice")]
    lines = []
    for other, name in ((scratch, "its own scratch arm"), (default, "the scratch default")):
        for part, key, label in figures:
            folds, diff = paired(runs, task, size, imagenet, other, part, key)
            if len(folds):
                each = ", ".join(f"{d:+.3f}" for d in diff)
                lines.append(f"- ImageNet minus {name}, {label}: mean {diff.mean():+.3f} over folds {folds} ({each})")
    return lines


TARGETS = {
    "cls": [("internal_cls", "macro_auc", "macro AUC", 0.93), ("internal_cls", "macro_f1", "macro F1", 0.80),
            ("external_cls", "malignant_auc", "BUS-BRA m-vs-b AUC", 0.80),
            ("external_cls", "lesion_called_normal", "BUS-BRA lesions called normal", -0.05)],
    "seg": [("internal_seg", "lesion_dice", "lesion Dice", 0.78), ("external_seg", "lesion_dice", "BUS-BRA Dice", 0.82),
            ("internal_seg", "normal_left_empty", "normal left empty", 0.70),
            ("internal_seg", "lesion_left_empty", "lesions left empty", -0.05)],
}  # fmt: skip
"""Issue 36's targets: (part, figure, label, bar); a negative bar is a ceiling (at most its absolute value)."""
RATES = {"lesion_called_normal", "normal_left_empty", "lesion_left_empty"}
"""Figures that are shares of images, shown as percentages."""


def _arm_mean(runs: list[dict], task: str, size: int, arm: tuple, part: str, key: str) -> tuple[float, int] | None:
    """The mean of ``part[key]`` over the folds ``arm`` ran at ``size``, and how many; None if none."""
    values = [
        r[part][key]
        for r in runs
        if (r["task"], r["img_size"], r["model"], r["weights"]) == (task, size, *arm) and key in r.get(part, {})
    ]
    return (float(np.mean(values)), len(values)) if values else None


def target_lines(runs: list[dict], task: str, size: int) -> list[str]:
    """Each target figure's fold mean per arm, whether the ImageNet arm meets it, and on how many folds
    that arm is ahead of its own scratch arm (paired; "ahead" is lower for a ceiling)."""
    imagenet, scratch, default = ARMS[task]
    targets = TARGETS["cls"] * (task != "seg") + TARGETS["seg"] * (task != "cls")
    lines = ["| target | bar | ImageNet | scratch | default | ImageNet meets it | ImageNet ahead of scratch |",
             "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for part, key, label, bar in targets:
        means = [_arm_mean(runs, task, size, arm, part, key) for arm in (imagenet, scratch, default)]
        if means[0] is None:
            continue
        sign = 1 if bar > 0 else -1
        show = (lambda v: f"{100 * v:.2f}%") if key in RATES else (lambda v: f"{v:.3f}")
        cells = [f"{show(m[0])} ({m[1]} fold{'s' * (m[1] > 1)})" if m else "—" for m in means]
        folds, diff = paired(runs, task, size, imagenet, scratch, part, key)
        ahead = f"{int((sign * diff > 0).sum())} of {len(folds)}" if len(folds) else "—"
        met = "yes" if sign * (means[0][0] - abs(bar)) >= 0 else "no"
        bound = f"{'>=' if sign > 0 else '<='} {show(abs(bar))}"
        lines.append(f"| {label} | {bound} | {' | '.join(cells)} | {met} | {ahead} |")
    return [f"Targets, {task} at {size} px (fold means; bars from issue 36):", "", *lines, ""]


def markdown(result: dict) -> str:
    """The BENCHMARKS.md section."""
    runs = result["runs"]
    lines = [
        "## ImageNet EfficientNet-Lite0 against scratch and the scratch defaults (issue 36)",
        "",
        f"Protocol: {result['protocol']}. Written by `benchmarks/pretrained.py`; intervals are 95% bootstrap "
        "intervals over patients (BUSI: duplicate groups). The cut is the malignancy cut fitted on the "
        "validation fold by Youden's J (`--target-sensitivity 0`: every arm as the first rows were). "
        "Datasets: BUSI (Al-Dhabyani et al., Data in Brief 2020), BUS-BRA (Gomez-Flores "
        "et al., Medical Physics 2024).",
        "",
    ]
    for task in ARMS:
        if any(r["task"] == task for r in runs):
            lines += _task_lines(runs, task)
    cpus = sorted({r["cpu"] for r in runs})
    commits = sorted({r["commit"] for r in runs})
    lines += [
        f"CPU: {', '.join(cpus)}; commits {', '.join(commits)}. `load` is the machine's 5-minute load average "
        "when the run ended: above 2, other work shared the 2 cores, and that run's images/s and wall time are "
        "of a shared CPU (they order the arms roughly; they are not the speed of any of them alone); '—': not "
        "recorded (the first runs, measured while the test suite and a second benchmark process ran). Every run "
        "used glibc's default malloc settings; each model's training speed alone, under both malloc settings, is "
        "in 'Training speed of the pretrained benchmark's models' (`benchmarks/fit_speed.py`).",
        "",
        "Commands:",
        "",
    ]
    lines += [f"    {c}" for c in result["commands"]]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", nargs="+", choices=list(ARMS), default=list(ARMS))
    p.add_argument("--arms", nargs="+", choices=["imagenet", "scratch", "default"], default=None,
                   help="which arms of each task (default: all three)")  # fmt: skip
    p.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--cls-sizes", nargs="+", type=int, default=[224, 128], help="classification input sides")
    p.add_argument("--epochs", type=int, default=20, help="train.py's default; another value changes the protocol")
    p.add_argument("--busi", type=Path, default=SHARED / "Dataset_BUSI_with_GT", help="BUSI folder")
    p.add_argument("--busbra", type=Path, default=SHARED / "BUS-BRA", help="BUS-BRA folder (with manifest.csv)")
    p.add_argument("--project", type=Path, default=REPO / "benchmarks" / "runs" / "pretrained", help="where runs go")
    p.add_argument("--no-markdown", action="store_true", help="do not touch BENCHMARKS.md")
    add_output_args(p, SECTION)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run (or read) every (task, arm, size, fold) asked for, merging each row into ``--json`` as it finishes."""
    args = parse_args(argv)
    if render_from_json(args, SECTION, markdown):
        return 0
    if busi_and_busbra_missing(args):
        return 2
    protocol = protocol_for(PROTOCOL, args.epochs, 20)
    command = command_line("pretrained.py", argv)
    names = ("imagenet", "scratch", "default")
    for fold in args.folds:
        for task in args.tasks:
            arms = [a for n, a in zip(names, ARMS[task], strict=True) if args.arms is None or n in args.arms]
            for size in args.cls_sizes if task == "cls" else [SEG_SIZE]:
                for model, weights in arms:
                    row = run_one(args, task, model, weights, size, fold)
                    result = {"protocol": protocol, "command": command, "runs": [row]}
                    save_runs(args, SECTION, result, KEY, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
