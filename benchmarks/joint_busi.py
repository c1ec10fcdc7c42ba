"""One joint model (mask and class from one encoder) against a separate U-Net and EfficientNet-B0 on BUSI.

Protocol (the segmentation benchmark's): BUSI's duplicate-grouped folds, all three classes
(normal images train the mask with an empty one), 128x128, 30 epochs, batch 8, Adam 1e-3 with
cosine decay, flip and +-15 degree rotation (``--augment flip_rotate``), no early stopping, float32,
seed 0. The U-Net trains with BCE + Dice, as the data come; EfficientNet-B0 (no ImageNet weights)
with cross-entropy and class-balanced sampling, as ``train.py`` does by default; the joint models
with BCE + Dice plus cross-entropy (``--cls-weight 1``) and class-balanced sampling. Every run is
scored by ``train.py`` itself on its best epoch (the U-Net's by validation Dice, EfficientNet's by
macro F1, the joint model's by their mean) and on all of BUS-BRA (``--external``, benign and
malignant), then ``evaluate.py --postprocess largest`` counts the lesions left on normal images.

Reported per run: lesion Dice (benign and malignant images), macro F1 and AUC, ECE before and after
temperature scaling (fitted on the validation fold, each half scored with the other half's), all
with 95% intervals over patients, and the ECE exactly calibrated probabilities would show on as
many images (``metrics.calibration.ece_if_calibrated``); on normal images the share given a mask
and the mean lesion count per normal image, without and with ``--postprocess largest``; the
training images/s (epochs after the first); BUS-BRA lesion Dice, malignant-vs-benign AUC and the
share of lesions called normal. Paired over the folds run: joint minus U-Net Dice, joint minus
EfficientNet-B0 macro F1.

A run folder that has ``metrics.json`` is read, not trained again, so an interrupted invocation
resumes. One (model, fold) per invocation is fine: results merge into ``--json``.

Datasets: BUSI (Al-Dhabyani et al., Data in Brief 28:104863, 2020) and BUS-BRA (Gomez-Flores et al.,
Medical Physics 51(4):3110-3123, 2024).

Usage:
    python benchmarks/joint_busi.py --folds 0 --models unet efficientnet_b0 joint
    python benchmarks/joint_busi.py --folds 1 --models joint_consistency
    python benchmarks/joint_busi.py --from-json benchmarks/results/joint_busi.json
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
    add_output_args,
    busi_and_busbra_missing,
    command_line,
    head_commit,
    protocol_for,
    render_from_json,
    save_runs,
)
from train_step import cpu_info

SECTION = "joint_busi"
SHARED = REPO.parent / "shared" / "datasets"
MODELS: dict[str, tuple[str, str, list[str]]] = {
    "unet": ("seg", "unet", ["--model", "unet", "--loss", "bce_dice"]),
    "efficientnet_b0": ("cls", "efficientnet_b0", ["--model", "efficientnet_b0", "--loss", "ce", "--weights", "none"]),
    "joint": ("joint", "unet", ["--model", "unet", "--loss", "bce_dice", "--cls-loss", "ce"]),
    "joint_consistency": (
        "joint", "unet-consistency",
        ["--model", "unet", "--loss", "bce_dice", "--cls-loss", "ce", "--consistency", "1"],
    ),
    "joint_balanced_loss": (
        "joint", "unet-weighted-ce",
        ["--model", "unet", "--loss", "bce_dice", "--cls-loss", "weighted_ce", "--no-oversample"],
    ),
    "joint_efficientnet": (
        "joint", "efficientnet_b0_unet", ["--model", "efficientnet_b0_unet", "--loss", "bce_dice", "--cls-loss", "ce"],
    ),
}  # fmt: skip
"""Model -> (task, run name, its train.py flags). ``joint`` is the U-Net with a class head on its
bottleneck; ``joint_consistency`` adds the agreement penalty (weight 1); ``joint_balanced_loss`` draws the
images as they come (as the U-Net does) and weights the classes in the loss instead; ``joint_efficientnet``
is EfficientNet-B0 with a U-Net decoder."""
KEY = ("model", "fold", "seed")
PROTOCOL = (
    "BUSI grouped folds, 3 classes, 128 px, 30 epochs, batch 8, Adam 1e-3 cosine, flip_rotate, "
    "no early stopping, float32, seed 0; best epoch by the task's monitor; BUS-BRA external"
)
EXTERNAL = "BUS-BRA"
SHARING = (
    "Up to four runs shared the 2 cores, so the training images/s are of a shared CPU: they order the "
    "models roughly, they are not the speed of any of them alone."
)


def run_dir(args: argparse.Namespace, model: str, fold: int) -> Path:
    """Where ``model``'s run of ``fold`` lives."""
    task, name, _ = MODELS[model]
    return Path(args.project) / task / f"{name}-f{fold}"


def train_cmd(args: argparse.Namespace, model: str, fold: int) -> list[str]:
    """The ``train.py`` command of one run."""
    task, name, flags = MODELS[model]
    return [
        sys.executable, "train.py", "--task", task, *flags, "--data-dir", str(args.busi), "--fold", str(fold),
        "--img-size", "128", "--epochs", str(args.epochs), "--batch-size", "8", "--lr", "1e-3",
        "--schedule", "cosine", "--augment", "flip_rotate", "--patience", "0", "--seed", "0",
        "--mixed-precision", "off", "--no-export", "--external", str(args.busbra / "manifest.csv"),
        "--project", str(args.project), "--name", f"{name}-f{fold}", "--exist-ok",
    ]  # fmt: skip


def _ci(d: dict, key: str) -> list | None:
    return d.get(f"{key}_ci95")


def _ece_floor(cls: dict, predictions: Path) -> float:
    """The ECE exactly calibrated probabilities would show (older runs: from their saved predictions)."""
    if "ece_if_calibrated" in cls["calibration"]["after"]:
        return cls["calibration"]["after"]["ece_if_calibrated"]["mean"]
    from evaluation.cls import read_predictions
    from metrics.calibration import ece_if_calibrated

    return ece_if_calibrated(read_predictions(predictions)[2])["mean"]


def read_row(model: str, fold: int, folder: Path) -> dict:
    """The row of one finished run (``metrics.json``, ``history.csv`` and the ``--postprocess largest`` evaluation)."""
    task = MODELS[model][0]
    m = json.loads((folder / "metrics.json").read_text())
    rows = _history(folder)
    timed = rows[1:] or rows
    images = m["train_cases"] * len(timed) / sum(r["train_seconds"] for r in timed)
    row: dict = {"model": model, "fold": fold, "seed": 0, "task": task, "best_epoch": m["best_epoch"]}
    row["train_images_per_second"] = images
    ext = m.get("external", {}).get(EXTERNAL, {})
    if task != "cls":
        seg = m["seg"] if task == "joint" else m
        largest = json.loads((folder / "eval" / "own-val-largest" / "metrics.json").read_text())
        largest = largest["seg"] if task == "joint" else largest
        row.update(
            lesion_dice=seg["lesion_dice"], lesion_dice_ci95=seg["lesion_dice_ci95"],
            normal_with_mask=1 - seg["normal_left_empty"], normal_lesions=seg["lesions"]["normal_mean"],
            normal_with_mask_largest=1 - largest["normal_left_empty"],
            normal_lesions_largest=largest["lesions"]["normal_mean"], lesion_dice_largest=largest["lesion_dice"],
            external_dice=ext.get("lesion_dice"), external_dice_ci95=_ci(ext, "lesion_dice"),
        )  # fmt: skip
    if task != "seg":
        cls = m["cls"] if task == "joint" else m
        before = cls["calibration"]["before"]
        row.update(
            macro_f1=cls["macro_f1"], macro_f1_ci95=cls["macro_f1_ci95"],
            macro_auc=cls["macro_auc"], macro_auc_ci95=cls["macro_auc_ci95"],
            ece_before=before["ece"], ece_before_ci95=before["ece_ci95"], ece=cls["ece"], ece_ci95=cls["ece_ci95"],
            temperature=cls["calibration"]["temperature"],
            ece_floor=_ece_floor(cls, folder / ("cls" if task == "joint" else "") / "predictions.csv"),
            external_auc=ext.get("malignant_auc"), external_auc_ci95=_ci(ext, "malignant_auc"),
            external_called_normal=ext.get("lesion_called_normal"),
        )  # fmt: skip
    if task == "joint":
        row.update(disagreement=m["disagreement"], disagreement_ci95=m["disagreement_ci95"])
    return row


def _history(folder: Path) -> list[dict]:
    import csv

    with open(folder / "history.csv", newline="") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def run_one(args: argparse.Namespace, model: str, fold: int) -> dict:
    """Train (unless finished), add the ``--postprocess largest`` evaluation, and read the row."""
    folder = run_dir(args, model, fold)
    t0 = time.perf_counter()
    if not (folder / "metrics.json").is_file():
        cmd = train_cmd(args, model, fold)
        print(f"== {model} fold {fold}: {' '.join(cmd[1:])}", flush=True)
        subprocess.run(cmd, cwd=REPO, check=True)
    else:
        print(f"== {model} fold {fold}: reading the finished run {folder}", flush=True)
    if MODELS[model][0] != "cls" and not (folder / "eval" / "own-val-largest" / "metrics.json").is_file():
        cmd = [sys.executable, "evaluate.py", "--run", str(folder), "--postprocess", "largest"]
        subprocess.run(cmd, cwd=REPO, check=True)
    row = read_row(model, fold, folder)
    return {**row, "wall_seconds": time.perf_counter() - t0, "commit": head_commit(), "cpu": cpu_info()["model"]}


def _fmt(v: float | None, ci: list | None = None, pct: bool = False) -> str:
    if v is None:
        return "—"
    if pct:
        return f"{100 * v:.1f}%" + (f" ({100 * ci[0]:.1f}-{100 * ci[1]:.1f})" if ci else "")
    return f"{v:.3f}" + (f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else "")


def paired(runs: list[dict], a: str, b: str, key: str) -> tuple[list[int], np.ndarray]:
    """Folds where models ``a`` and ``b`` both ran, and ``a``'s ``key`` minus ``b``'s on each."""
    by = {(r["model"], r["fold"]): r for r in runs}
    folds = sorted(f for m, f in by if m == a and (b, f) in by)
    return folds, np.array([by[(a, f)][key] - by[(b, f)][key] for f in folds])


def markdown(result: dict) -> str:
    """The BENCHMARKS.md section."""
    runs = sorted(result["runs"], key=lambda r: (r["fold"], list(MODELS).index(r["model"])))
    lines = [
        "## One model for mask and class (issue 22)",
        "",
        f"Protocol: {result['protocol']}. Written by `benchmarks/joint_busi.py`; intervals are 95% bootstrap "
        "intervals over patients. Datasets: BUSI (Al-Dhabyani et al., Data in Brief 2020), BUS-BRA "
        "(Gomez-Flores et al., Medical Physics 2024).",
        "",
        "| model | fold | lesion Dice | macro F1 | macro AUC | ECE before → after (T; ECE if exactly calibrated) "
        "| normal images with a mask "
        "(mean lesions per normal image): none / largest | joint heads disagree | BUS-BRA Dice | BUS-BRA AUC m-vs-b "
        "(called normal) | train img/s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        seg = r["task"] != "cls"
        cls = r["task"] != "seg"
        floor = f"; floor {r['ece_floor']:.3f}" if r.get("ece_floor") is not None else ""
        ece = (
            f"{_fmt(r['ece_before'])} → {_fmt(r['ece'], r['ece_ci95'])} (T {r['temperature']:.2f}{floor})"
            if cls
            else "—"
        )
        normal = (
            f"{_fmt(r['normal_with_mask'], pct=True)} ({r['normal_lesions']:.2f}) / "
            f"{_fmt(r['normal_with_mask_largest'], pct=True)} ({r['normal_lesions_largest']:.2f})"
            if seg
            else "—"
        )
        ext_cls = (
            f"{_fmt(r['external_auc'], r['external_auc_ci95'])} ({_fmt(r['external_called_normal'], pct=True)})"
            if cls
            else "—"
        )
        lines.append(
            f"| {r['model']} | {r['fold']} | {_fmt(r.get('lesion_dice'), r.get('lesion_dice_ci95'))} | "
            f"{_fmt(r.get('macro_f1'), r.get('macro_f1_ci95'))} | "
            f"{_fmt(r.get('macro_auc'), r.get('macro_auc_ci95'))} | "
            f"{ece} | {normal} | {_fmt(r.get('disagreement'), r.get('disagreement_ci95'), pct=True)} | "
            f"{_fmt(r.get('external_dice'), r.get('external_dice_ci95'))} | {ext_cls} | "
            f"{r['train_images_per_second']:.1f} |"
        )
    lines += ["", "Paired over the folds run (joint model minus the separate one):", ""]
    for joint in [m for m in MODELS if m.startswith("joint")]:
        for other, key, name in (("unet", "lesion_dice", "lesion Dice"), ("efficientnet_b0", "macro_f1", "macro F1")):
            folds, diff = paired(runs, joint, other, key)
            if folds:
                each = ", ".join(f"{d:+.3f}" for d in diff)
                lines.append(f"- {joint} − {other}, {name}: mean {diff.mean():+.3f} over folds {folds} ({each})")
    cpus = sorted({r["cpu"] for r in runs})
    lines += [
        "",
        f"CPU: {', '.join(cpus)}. {SHARING}",
        "",
        "Commands:",
        "",
        *[f"    {c}" for c in result["commands"]],
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=["unet", "efficientnet_b0", "joint"])
    p.add_argument("--folds", nargs="+", type=int, default=[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--busi", type=Path, default=SHARED / "Dataset_BUSI_with_GT", help="BUSI folder")
    p.add_argument("--busbra", type=Path, default=SHARED / "BUS-BRA", help="BUS-BRA folder (with manifest.csv)")
    p.add_argument("--project", type=Path, default=REPO / "benchmarks" / "runs" / "joint", help="where runs go")
    p.add_argument("--no-markdown", action="store_true", help="do not touch BENCHMARKS.md")
    add_output_args(p, SECTION)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run (or read) every (model, fold) asked for, merging each row into ``--json`` as it finishes."""
    args = parse_args(argv)
    if render_from_json(args, SECTION, markdown):
        return 0
    if busi_and_busbra_missing(args):
        return 2
    protocol = protocol_for(PROTOCOL, args.epochs, 30)
    command = command_line("joint_busi.py", argv)
    for fold in args.folds:
        for model in args.models:
            row = run_one(args, model, fold)
            save_runs(args, SECTION, {"protocol": protocol, "command": command, "runs": [row]}, KEY, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
