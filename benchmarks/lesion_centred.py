"""The frame against the lesion: a classifier of whole images beside one of crops around the lesion, BUSI -> BUS-BRA.

Protocol: ``train.py``'s own defaults, as a user runs them (20 epochs, batch 8, Adam 1e-3 with cosine
decay, light augmentation, early stopping after 10 epochs without gain, cross-entropy with class
oversampling; with ImageNet weights the encoder frozen for 3 epochs, then every layer at 1e-4), on
BUSI's duplicate-grouped folds (``--folds``, of the dataset's 5), float32, seed 0, no export, the
malignancy cut fitted on the validation fold for 90% sensitivity (the default); scored by
``train.py`` itself on the best epoch, on the validation fold and on all of BUS-BRA (``--external``,
benign and malignant). Arms (``--arms``):

- ``frame``: the default classifier, EfficientNet-Lite0 from ImageNet, on whole images, three classes.
- ``joint``: the joint model with train.py's defaults (``--task joint``: the U-Net with a class head), whole
  images, three classes; run at its CPU default size with ``--sizes 96``.
- ``lesion``: the same on square crops around the lesion (``--crop lesion``), benign against malignant.
- ``lesion-scratch``: the lesion arm from random weights.
- ``lesion-jitter``: the lesion arm with the largest crop jitter (``--crop-jitter 0.16``: shifts and scale
  changes of up to 16% of the side), for a segmenter's boxes, which are not the true ones.
- ``diagnosis``: the lesion arm's classifier behind a segmenter (``evaluate.py --segmenter``): the
  segmenter's own masks decide normal and place the crops, on every BUSI validation image (normal ones
  too) and on BUS-BRA. The segmenter of fold F is ``--segmenters``' run of that fold (default: the
  U-Net of ``benchmarks/pretrained.py``, ``seg/unet-none-96px-fF``, trained by
  ``python benchmarks/pretrained.py --tasks seg --arms default --folds F``).
- ``diagnosis-jitter``: the same with the ``lesion-jitter`` arm's classifier.
- ``diagnosis-scratch``: the same with the ``lesion-scratch`` arm's classifier (from random weights).

The lesion arms are cropped from the datasets' true masks, internally and on BUS-BRA: they measure the
classifier given the lesion; the diagnosis arm measures what a user gets. Reported per run, with 95%
intervals bootstrapped over patients: malignant-vs-benign AUC, sensitivity and specificity at the cut,
internal and on BUS-BRA; training images/s and wall time. One (arm, size, fold) is one ``train.py``
process; a finished run folder is read, not trained again, and each row merges into ``--json``.

Datasets: BUSI (Al-Dhabyani et al., Data in Brief 28:104863, 2020) and BUS-BRA (Gomez-Flores et al.,
Medical Physics 51(4):3110-3123, 2024).

Usage:
    python benchmarks/lesion_centred.py --folds 0 --sizes 128
    python benchmarks/lesion_centred.py --from-json benchmarks/results/lesion_centred.json
"""

from __future__ import annotations

import argparse
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
    protocol_for,
    render_from_json,
    save_runs,
)
from pretrained import CLS_KEYS, EXTERNAL, SHARED, _fmt, _pick, read_row
from train_step import cpu_info

SECTION = "lesion_centred"
ARMS: dict[str, list[str]] = {
    "frame": ["--model", "efficientnet_lite0", "--weights", "imagenet"],
    "lesion": ["--model", "efficientnet_lite0", "--weights", "imagenet", "--crop", "lesion"],
    "lesion-scratch": ["--model", "efficientnet_lite0", "--weights", "none", "--crop", "lesion"],
    "lesion-jitter": [
        "--model",
        "efficientnet_lite0",
        "--weights",
        "imagenet",
        "--crop",
        "lesion",
        "--crop-jitter",
        "0.16",
    ],
    "diagnosis": [],
    "diagnosis-jitter": [],
    "diagnosis-scratch": [],
    "joint": ["--model", "unet"],
}
"""Arm -> its train.py flags."""
TASKS = {"joint": "joint"}
"""An arm that is not a classifier (``--task cls``) -> its task."""
DIAGNOSES = {"diagnosis": "lesion", "diagnosis-jitter": "lesion-jitter", "diagnosis-scratch": "lesion-scratch"}
"""A diagnosis arm -> the lesion arm whose classifier it puts behind the segmenter."""
KEY = ("arm", "img_size", "fold")
PROTOCOL = (
    "train.py defaults (20 epochs, batch 8, Adam 1e-3 cosine, light augmentation, patience 10, ce with "
    "oversampling; ImageNet: 3 frozen epochs then lr/10), BUSI grouped folds, float32, seed 0, cut for 90% "
    "sensitivity on the validation fold; BUS-BRA external"
)
TARGETS = {"internal AUC": 0.92, "BUS-BRA AUC": 0.82, "BUS-BRA sensitivity": 0.85, "BUS-BRA specificity": 0.50}


def run_dir(args: argparse.Namespace, arm: str, size: int, fold: int) -> Path:
    """Where one run lives (train.py puts it under its task's folder)."""
    return Path(args.project) / TASKS.get(arm, "cls") / f"{arm}-{size}px-f{fold}"


def train_cmd(args: argparse.Namespace, arm: str, size: int, fold: int) -> list[str]:
    """The ``train.py`` command of one run: the defaults, with the arm's flags, the size, fold and external site."""
    folder = run_dir(args, arm, size, fold)
    return [
        sys.executable, "train.py", "--task", TASKS.get(arm, "cls"), *ARMS[arm], "--data-dir", str(args.busi),
        "--fold", str(fold), "--img-size", str(size), "--epochs", str(args.epochs), "--mixed-precision", "off",
        "--no-export", "--seed", "0", "--external", f"{EXTERNAL}={args.busbra / 'manifest.csv'}",
        "--project", str(folder.parent.parent), "--name", folder.name, "--exist-ok",
    ]  # fmt: skip


def diagnosis_row(args: argparse.Namespace, arm: str, size: int, fold: int) -> dict:
    """Score the lesion arm's run of ``fold`` behind its segmenter, on its validation fold and on BUS-BRA."""
    lesion = run_dir(args, DIAGNOSES[arm], size, fold)
    seg = Path(str(args.segmenters).replace("{fold}", str(fold)))
    for path, what in ((lesion, "the lesion arm's run"), (seg, "the segmenter")):
        if not (path / "metrics.json").is_file():
            raise FileNotFoundError(f"{what} of fold {fold} is not finished: {path} (see the module's docstring)")
    out = {name: lesion / "eval" / f"diagnosis-{seg.name}-{name}" for name in ("own-val", f"{EXTERNAL}-all")}
    t0 = time.perf_counter()
    if not (out[f"{EXTERNAL}-all"] / "metrics.json").is_file():
        cmd = [sys.executable, "evaluate.py", "--run", str(lesion), "--segmenter", str(seg),
               "--data-dir", f"{EXTERNAL}={args.busbra / 'manifest.csv'}"]  # fmt: skip
        print(f"== diagnosis {size}px fold {fold}: {' '.join(cmd[1:])}", flush=True)
        subprocess.run(cmd, cwd=REPO, check=True)
    keys = (*CLS_KEYS, "normal_called_normal")
    own, ext = (json.loads((d / "metrics.json").read_text()) for d in out.values())
    row = {"arm": arm, "img_size": size, "fold": fold, "segmenter": str(seg)}
    row.update(internal_cls=_pick(own, keys), external_cls=_pick(ext, keys), wall_seconds=time.perf_counter() - t0)
    return {**row, "load_average": os.getloadavg()[1], "commit": head_commit(), "cpu": cpu_info()["model"]}


def run_one(args: argparse.Namespace, arm: str, size: int, fold: int) -> dict:
    """Train one run unless it has finished, and read its row."""
    if arm in DIAGNOSES:
        return diagnosis_row(args, arm, size, fold)
    folder = run_dir(args, arm, size, fold)
    t0 = time.perf_counter()
    trained = not (folder / "metrics.json").is_file()
    if trained:
        cmd = train_cmd(args, arm, size, fold)
        print(f"== {arm} {size}px fold {fold}: {' '.join(cmd[1:])}", flush=True)
        subprocess.run(cmd, cwd=REPO, check=True)
    row = {"arm": arm, "img_size": size, "fold": fold, **read_row(TASKS.get(arm, "cls"), folder)}
    if trained:
        row.update(wall_seconds=time.perf_counter() - t0, load_average=os.getloadavg()[1])
    else:  # what only the training invocation could see
        previous = json.loads(args.json.read_text())["runs"] if args.json.is_file() else []
        before = next((r for r in previous if tuple(r.get(k) for k in KEY) == (arm, size, fold)), {})
        row.update({k: before[k] for k in ("wall_seconds", "load_average") if k in before})
    provenance = folder / "provenance.json"  # the code that trained the run, whenever it was read
    commit = json.loads(provenance.read_text())["commit"] if provenance.is_file() else head_commit()
    return {**row, "commit": commit, "cpu": cpu_info()["model"]}


def _means(runs: list[dict], arm: str, size: int) -> dict[str, float]:
    rows = [r for r in runs if r["arm"] == arm and r["img_size"] == size]
    pick = {
        "internal AUC": ("internal_cls", "malignant_auc"),
        "BUS-BRA AUC": ("external_cls", "malignant_auc"),
        "BUS-BRA sensitivity": ("external_cls", "sensitivity"),
        "BUS-BRA specificity": ("external_cls", "specificity"),
    }
    return {k: float(np.mean([r[p][key] for r in rows])) for k, (p, key) in pick.items()}


def markdown(result: dict) -> str:
    """The BENCHMARKS.md section."""
    runs = sorted(result["runs"], key=lambda r: (-r["img_size"], r["fold"], list(ARMS).index(r["arm"])))
    head = ["arm", "px", "fold", "m-vs-b AUC", "sens / spec at the cut", "normals called normal",
            "lesions called normal", "BUS-BRA m-vs-b AUC", "BUS-BRA sens / spec", "BUS-BRA lesions called normal",
            "train img/s", "wall (min)", "load"]  # fmt: skip
    lines = [
        "## The frame against the lesion: whole-image and lesion-crop classifiers, and the diagnosis (issue 37)",
        "",
        f"Protocol: {result['protocol']}. Written by `benchmarks/lesion_centred.py`; intervals are 95% bootstrap "
        "intervals over patients (BUSI: duplicate groups). The lesion arms crop from the true masks, on BUSI and "
        "on BUS-BRA; the diagnosis crops from its segmenter's masks and scores every image. Datasets: BUSI "
        "(Al-Dhabyani et al., Data in Brief 2020), BUS-BRA (Gomez-Flores et al., Medical Physics 2024).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + " --- |" * len(head),
    ]
    for r in runs:
        i, e = r["internal_cls"], r["external_cls"]
        wall = f"{r['wall_seconds'] / 60:.1f}" if "wall_seconds" in r else "—"
        load = f"{r['load_average']:.1f}" if "load_average" in r else "—"
        speed = f"{r['train_images_per_second']:.1f}" if "train_images_per_second" in r else "—"
        normal = _fmt(i, "normal_called_normal", pct=True) if i.get("normal_called_normal") is not None else "—"
        cells = [r["arm"], str(r["img_size"]), str(r["fold"]), _fmt(i, "malignant_auc"),
                 f"{_fmt(i, 'sensitivity')} / {_fmt(i, 'specificity')}", normal,
                 _fmt(i, "lesion_called_normal", pct=True), _fmt(e, "malignant_auc"),
                 f"{_fmt(e, 'sensitivity')} / {_fmt(e, 'specificity')}", _fmt(e, "lesion_called_normal", pct=True),
                 speed, wall, load]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Fold means against the issue's targets (" + ", ".join(f"{k} >= {v}" for k, v in TARGETS.items())]
    lines[-1] += "):"
    lines.append("")
    for size in sorted({r["img_size"] for r in runs}, reverse=True):
        for arm in ARMS:
            folds = sorted(r["fold"] for r in runs if r["arm"] == arm and r["img_size"] == size)
            if folds:
                means = _means(runs, arm, size)
                lines.append(
                    f"- {arm}, {size} px, folds {folds}: " + ", ".join(f"{k} {v:.3f}" for k, v in means.items())
                )
    lines += [
        "",
        f"CPU: {', '.join(sorted({r['cpu'] for r in runs}))}; "
        f"commits {', '.join(sorted({r['commit'] for r in runs}))}. "
        "`load`: the 5-minute load average when the run ended (above 2, the 2 cores were shared and its speed is "
        "not its own).",
        "",
        "Commands:",
        "",
        *[f"    {c}" for c in result["commands"]],
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    p.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--sizes", nargs="+", type=int, default=[128], help="input sides")
    p.add_argument("--epochs", type=int, default=20, help="train.py's default; another value changes the protocol")
    p.add_argument("--busi", type=Path, default=SHARED / "Dataset_BUSI_with_GT", help="BUSI folder")
    p.add_argument("--busbra", type=Path, default=SHARED / "BUS-BRA", help="BUS-BRA folder (with manifest.csv)")
    p.add_argument("--project", type=Path, default=REPO / "benchmarks" / "runs" / SECTION, help="where runs go")
    p.add_argument(
        "--segmenters",
        default=str(REPO / "benchmarks" / "runs" / "pretrained" / "seg" / "unet-none-96px-f{fold}"),
        help="the diagnosis arm's segmentation run of each fold ({fold} is replaced)",
    )
    p.add_argument("--no-markdown", action="store_true", help="do not touch BENCHMARKS.md")
    add_output_args(p, SECTION)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run (or read) every (arm, size, fold) asked for, merging each row into ``--json`` as it finishes."""
    args = parse_args(argv)
    if render_from_json(args, SECTION, markdown):
        return 0
    if busi_and_busbra_missing(args):
        return 2
    protocol = protocol_for(PROTOCOL, args.epochs, 20)
    command = command_line("lesion_centred.py", argv)
    for fold in args.folds:
        for size in args.sizes:
            for arm in args.arms:
                row = run_one(args, arm, size, fold)
                save_runs(args, SECTION, {"protocol": protocol, "command": command, "runs": [row]}, KEY, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
