"""External validation: models trained at one site, scored at the other (BUSI <-> BUS-BRA).

Protocol: ``train.py`` with its defaults (segmentation: U-Net, BCE + Dice, 96 px on a
CPU-only machine, 20 epochs, light augmentation; classification: EfficientNet-B0, 128 px,
20 epochs, cross-entropy with class-balanced sampling), one fold of the training site's
grouped splits per run, plus the recipe's own flags. Directions:

- ``busi``: trained on BUSI (segmentation on its benign and malignant images, as a lesion
  segmenter is used; classification on all three classes), validated on its fold, then
  scored on all of BUS-BRA (``--external``).
- ``busbra``: trained on BUS-BRA (benign and malignant, patient-grouped folds), validated on
  its fold, then scored on BUSI's benign and malignant images.

BUS-BRA is read through a manifest this script writes under the run folder, the
dataset's ``manifest.csv`` joined with ``bus_data.csv``'s scanner (``device``), so every
figure is also broken down per scanner. Intervals are 95% bootstrap intervals over
patients (BUS-BRA's ``Case``; BUSI has one image per group). Classification is reported as
the site without normal images allows: malignant-vs-benign AUC from P(malignant), the
share of lesion images called normal, and sensitivity / specificity at the cut on
P(malignant) chosen on the internal validation fold (Youden's J).

A run folder that already has ``metrics.json`` is read, not trained again; if it was
trained without ``--external`` its best weights are scored now (the same code path), so
an interrupted invocation resumes. One (recipe, task, direction, fold, seed) per
invocation is fine: results merge into ``--json`` and the section is re-rendered.

Datasets: BUSI (Al-Dhabyani et al., Data in Brief 28:104863, 2020) and BUS-BRA
(Gomez-Flores et al., Medical Physics 51(4):3110-3123, 2024).

Usage:
    python benchmarks/external.py --recipes baseline --tasks seg cls --directions busi --folds 0
    python benchmarks/external.py --recipes baseline --tasks seg --directions busbra --folds 0
    python benchmarks/external.py --from-json benchmarks/results/external.json
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path

from _common import (
    REPO,
    add_output_args,
    command_line,
    head_commit,
    merge_previous,
    render_from_json,
    write_json,
    write_section,
    write_text,
)
from train_step import cpu_info

sys.path.insert(0, str(REPO))

from data.sources import dataset_name  # noqa: E402

SECTION = "external"
SHARED = REPO.parent / "shared" / "datasets"
BUSI_DIR = SHARED / "Dataset_BUSI_with_GT"
BUSBRA_DIR = SHARED / "BUS-BRA"
RECIPES: dict[str, list[str]] = {
    "baseline": ["--augment", "light", "--channels", "3"],
    "scanner_aug": ["--augment", "scanner", "--channels", "3"],
    "image_norm": ["--augment", "light", "--channels", "3", "--input-norm", "image"],
    "gray": ["--augment", "light", "--channels", "1"],
    "long": ["--augment", "light", "--channels", "3", "--epochs", "40"],
    "dropout": ["--augment", "light", "--channels", "3", "--dropout", "0.3"],
    "batch_norm": ["--augment", "light", "--channels", "3", "--norm", "batch"],
    "tta": [],
    "basicunet": [],
}
"""Each recipe's train.py flags on top of the protocol's. ``baseline`` pins today's defaults, so its rows stay
the recipe before issue 21 when the defaults change. ``gray`` (luma input) is segmentation only: the classifier
backbones take RGB. ``long`` doubles the schedule (40 epochs, the cosine decay stretched over them, early
stopping as by default); ``dropout`` is the regularization candidate (0.3 instead of 0.1: spatial dropout in the
U-Net's deepest levels, dropout before the classifier's last layer). ``batch_norm`` is the U-Net with batch
norm, the counterpart of the default instance norm (segmentation only: the classifiers' backbones come with
their own batch norm). ``tta`` trains nothing: it scores the ``baseline`` run of the same row again with flip
test-time augmentation (``evaluate.py --tta``), internally and externally. ``basicunet`` is MONAI's BasicUNet
(segmentation only), the peer reference, trained the way train.py trains the U-Net (see :func:`train_basicunet`)."""
SEG_ONLY = ("gray", "basicunet", "batch_norm")
KEY = ("recipe", "task", "direction", "fold", "seed")


def busbra_manifest(out_dir: Path, source: Path = BUSBRA_DIR) -> Path:
    """BUS-BRA's manifest with each image's scanner, written to ``out_dir/BUS-BRA/manifest.csv`` (absolute paths).

    Raises:
        FileNotFoundError: If BUS-BRA's ``manifest.csv`` or ``bus_data.csv`` is missing.
    """
    for name in ("manifest.csv", "bus_data.csv"):
        if not (source / name).is_file():
            raise FileNotFoundError(f"BUS-BRA's {name} not found in {source}")
    with open(source / "bus_data.csv", newline="") as f:
        device = {r["ID"]: r["Device"].split(" @")[0].strip() for r in csv.DictReader(f)}
    rows = []
    with open(source / "manifest.csv", newline="") as f:
        for r in csv.DictReader(f):
            case = Path(r["image"]).stem
            rows.append(
                {
                    "id": case,
                    "image": str((source / r["image"]).resolve()),
                    "mask": str((source / r["mask"]).resolve()),
                    "label": r["label"],
                    "group": r["group"],
                    "device": device[case],
                }
            )
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    path = out_dir / "BUS-BRA" / "manifest.csv"
    if not path.is_file() or path.read_text() != buf.getvalue():  # runs in parallel read it: write once, atomically
        write_text(path, buf.getvalue())
    return path


def sites(args: argparse.Namespace) -> dict[str, Path]:
    """The two datasets as ``--data-dir`` / ``--external`` take them."""
    return {"busi": args.busi, "busbra": busbra_manifest(args.project, args.busbra)}


def run_dir_of(args: argparse.Namespace, recipe: str, task: str, direction: str, fold: int, seed: int) -> Path:
    """The run folder of one row."""
    return args.project / task / f"{recipe}-{task}-{direction}-f{fold}-s{seed}"


def site_pair(direction: str, data: dict[str, Path]) -> tuple[Path, Path]:
    """The training site and the other site of a direction (``"busi"`` trains on BUSI)."""
    return (data["busi"], data["busbra"]) if direction == "busi" else (data["busbra"], data["busi"])


def train_flags(task: str, direction: str, data: dict[str, Path]) -> list[str]:
    """Data flags of one direction: the training site, its classes, the other site as external."""
    train_site, other = site_pair(direction, data)
    classes = ["benign", "malignant"] if (task == "seg" or direction == "busbra") else []
    return ["--data-dir", str(train_site), "--external", str(other), *(["--classes", *classes] if classes else [])]


def train_basicunet(args: argparse.Namespace, direction: str, fold: int, seed: int) -> Path:
    """MONAI's BasicUNet trained as train.py trains the U-Net, then scored on the other site (unless done).

    Same cases, pixels and augmentation (the project's pipeline, 96 px, ``light``), 20 epochs, batch 8,
    Adam 1e-3 with train.py's cosine decay to 5%, DiceCE loss (its BCE + Dice), the best validation epoch
    scored externally; no lesion gate (compare with the U-Net's ungated figure). Runs under the Python that
    has PyTorch and MONAI (``--monai-python``; ``monai_basicunet.py``'s docstring shows how to set it up).
    """
    if direction != "busi":
        raise ValueError("the BasicUNet reference is trained on BUSI only")
    data = sites(args)
    out = run_dir_of(args, "basicunet", "seg", direction, fold, seed).with_suffix(".json")
    if not out.is_file():
        cmd = [
            str(args.monai_python), "benchmarks/monai_basicunet.py", "--worker", "--fold", str(fold),
            "--seed", str(seed), "--epochs", "20", "--img-size", "96", "--augment", "light", "--schedule", "cosine",
            "--data-dir", str(data["busi"]), "--project", str(args.project),
            "--worker-out", str(out.with_suffix(".history.json")), "--external", str(data["busbra"]),
            "--external-out", str(out),
        ]  # fmt: skip
        print(f"== BasicUNet fold {fold} seed {seed}: {' '.join(cmd[1:])}", flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(cmd, cwd=REPO, check=True)
    return out


def basicunet_row(path: Path, direction: str, fold: int, seed: int) -> dict:
    """A row from :func:`train_basicunet`'s output: best validation Dice, external Dice with patient intervals."""
    import numpy as np

    from reports.stats import BREAKDOWN_BOOT, group_bootstrap_ci

    run = json.loads(path.read_text())
    best = max(run["history"], key=lambda r: r["val_dice"])
    ext = run["external"]
    dice, groups = np.array(ext["dice"]), np.array(ext["groups"], dtype=object)
    devices = np.array([d or "unknown" for d in ext["devices"]], dtype=object)
    per_device = {}
    for device in sorted(set(devices.tolist())):
        idx = np.flatnonzero(devices == device)
        per_device[device] = {
            "n": len(idx),
            "dice": float(dice[idx].mean()),
            "dice_ci95": list(group_bootstrap_ci(dice[idx], groups[idx], n_boot=BREAKDOWN_BOOT)),
            "below_0.5": float((dice[idx] < 0.5).mean()),
        }
    timed = run["history"][1:] or run["history"]
    per_epoch = sum(r["train_seconds"] for r in timed) / len(timed)
    return {
        "recipe": "basicunet", "task": "seg", "direction": direction, "fold": fold, "seed": seed,
        "model": f"MONAI {run['monai']} BasicUNet", "img_size": 96, "epochs_run": len(run["history"]),
        "best_epoch": best["epoch"], "train_cases": run["train_cases"], "seconds_per_epoch": per_epoch,
        "train_images_per_second": run["train_images"] / per_epoch,
        "internal": {"dice": best["val_dice"], "n_images": run["val_cases"]},
        "external_name": ext["name"],
        "external": {
            "dice": float(dice.mean()), "dice_ci95": list(group_bootstrap_ci(dice, groups)),
            "dice_below_0.5": float((dice < 0.5).mean()), "n_images": len(dice), "ungated_dice": float(dice.mean()),
        },
        "per_device": per_device,
    }  # fmt: skip


def score_tta(args: argparse.Namespace, task: str, direction: str, fold: int, seed: int) -> tuple[Path, Path, Path]:
    """The ``baseline`` run of the row scored with ``evaluate.py --tta`` on its validation fold and the other site
    (unless done); returns the run and the two metrics files.

    Raises:
        FileNotFoundError: If the baseline run has not been trained.
    """
    run = run_dir_of(args, "baseline", task, direction, fold, seed)
    if not (run / "metrics.json").is_file():
        raise FileNotFoundError(f"the tta recipe scores the baseline run, which is not there yet: {run}")
    other = site_pair(direction, sites(args))[1]
    internal = run / "eval" / "own-val-tta" / "metrics.json"
    external = run / "eval" / f"{dataset_name(other)}-all-tta" / "metrics.json"
    for out, extra in ((internal, []), (external, ["--data-dir", str(other)])):
        if not out.is_file():
            cmd = [sys.executable, "evaluate.py", "--run", str(run), "--tta", *extra]
            print(f"== tta {task} {direction} fold {fold} seed {seed}: {' '.join(cmd[1:])}", flush=True)
            subprocess.run(cmd, cwd=REPO, check=True)
    return run, internal, external


def train_one(args: argparse.Namespace, recipe: str, task: str, direction: str, fold: int, seed: int) -> Path:
    """Train (unless complete) one row with ``--external``; a complete run lacking external metrics is scored now."""
    if recipe == "basicunet":
        return train_basicunet(args, direction, fold, seed)
    data = sites(args)
    run_dir = run_dir_of(args, recipe, task, direction, fold, seed)
    if not (run_dir / "metrics.json").is_file():
        cmd = [
            sys.executable, "train.py", "--task", task, "--fold", str(fold), "--seed", str(seed), "--no-export",
            "--project", str(args.project), "--name", run_dir.name, "--exist-ok",
            *(["--resume", str(run_dir)] if (run_dir / "config.json").is_file() else []),
            *train_flags(task, direction, data), *RECIPES[recipe],
        ]  # fmt: skip
        print(f"== {recipe} {task} {direction} fold {fold} seed {seed}: {' '.join(cmd[1:])}", flush=True)
        subprocess.run(cmd, cwd=REPO, check=True)
    other = site_pair(direction, data)[1]
    if task == "cls" and "malignant_auc" not in json.loads((run_dir / "metrics.json").read_text()):
        add_internal_malignancy(run_dir)
    if not (run_dir / "external" / dataset_name(other) / "metrics.json").is_file():
        score_external(run_dir, other)
    return run_dir


def add_internal_malignancy(run_dir: Path) -> None:
    """For a classification run trained before the malignancy figures existed: choose its cut on P(malignant)
    and add the validation fold's malignancy figures to its ``metrics.json``, from its best weights, as
    training's evaluation now does."""
    from config.train import TrainConfig
    from core.classes import CLASS_NAMES
    from evaluation.cls import malignancy_cut, predict_cls
    from evaluation.run_files import load_run_model
    from metrics.classification import malignancy_report
    from training.data import fold_records, prepare_data

    cfg = TrainConfig.load(run_dir / "config.json")
    _, val = fold_records(prepare_data(cfg), cfg, cfg.fold)
    _, _, [probs] = predict_cls(load_run_model(run_dir / "weights" / "best.keras"), val, cfg)
    cuts, cut_info = malignancy_cut(val, probs, run_dir, fit=True, own_data=True, target_sensitivity=0)  # Youden
    metrics = json.loads((run_dir / "metrics.json").read_text())
    groups = [r.group or r.case_id for r in val]
    metrics.update(malignancy_report([r.label for r in val], probs, CLASS_NAMES, groups, cuts))
    metrics.update(malignancy_threshold=cut_info["threshold"], malignancy_cut=cut_info)
    write_json(run_dir / "metrics.json", metrics)


def score_external(run_dir: Path, dataset: Path) -> None:
    """Score a finished run's best weights on ``dataset`` as ``train.py --external`` does after training.

    A classification run trained before the malignancy cut existed gets it first (:func:`add_internal_malignancy`).
    """
    from config.train import TrainConfig
    from evaluation.external import evaluate_external, load_externals
    from evaluation.run_files import THRESHOLD_FILE, load_run_model
    from evaluation.tasks import evaluator, summary_keys

    cfg = TrainConfig.load(run_dir / "config.json")
    model = load_run_model(run_dir / "weights" / "best.keras")
    if cfg.task == "cls" and not (run_dir / THRESHOLD_FILE).is_file():
        add_internal_malignancy(run_dir)
    print(f"== scoring {run_dir.name} on {dataset}", flush=True)
    result = evaluate_external(
        evaluator(cfg.task), model, cfg, run_dir, load_externals([str(dataset)], cfg.classes), summary_keys(cfg.task)
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.setdefault("external", {}).update(result)
    write_json(run_dir / "metrics.json", metrics)


SEG_KEYS = ("dice", "lesion_dice", "dice_below_0.5")
CLS_KEYS = ("malignant_auc", "malignant_auc_renorm", "lesion_called_normal", "sensitivity", "specificity")


def read_row(
    run_dir: Path,
    recipe: str,
    task: str,
    direction: str,
    fold: int,
    seed: int,
    scored: tuple[Path, Path] | None = None,
) -> dict:
    """One result row: internal and external metrics with intervals, per scanner, training speed.

    ``scored`` replaces the run's own internal and external metrics files (the ``tta`` recipe's).
    """
    internal = json.loads((run_dir / "metrics.json").read_text())
    (name,) = internal["external"]
    ext = json.loads((run_dir / "external" / name / "metrics.json").read_text())
    if scored is not None:
        training = internal
        internal, ext = (json.loads(p.read_text()) for p in scored)
        internal.update({k: training[k] for k in ("best_epoch", "train_cases")})
    cfg = json.loads((run_dir / "config.json").read_text())
    keys = SEG_KEYS if task == "seg" else CLS_KEYS + ("macro_f1", "macro_auc")

    def pick(m: dict) -> dict:
        out = {k: m.get(k) for k in keys if m.get(k) is not None}
        out.update({f"{k}_ci95": m[f"{k}_ci95"] for k in keys if m.get(f"{k}_ci95") is not None})
        out["n_images"] = m.get("n_images")
        if task == "seg":
            out["ungated_dice"] = m["ungated"]["dice"]
        return out

    per_device = {
        d: {k: v for k, v in e.items() if not isinstance(v, (list, dict)) or k.endswith("_ci95")}
        for d, e in ext.get("per_device", {}).items()
    }
    history = [row for row in csv.DictReader(open(run_dir / "history.csv"))]
    seconds = [float(r["train_seconds"]) for r in history[1:]] or [float(history[0]["train_seconds"])]
    return {
        "recipe": recipe,
        "task": task,
        "direction": direction,
        "fold": fold,
        "seed": seed,
        "model": cfg["model"],
        "img_size": cfg["img_size"],
        "epochs_run": len(history),
        "best_epoch": internal.get("best_epoch"),
        "train_cases": internal.get("train_cases"),
        "seconds_per_epoch": sum(seconds) / len(seconds),
        "train_images_per_second": internal.get("train_cases", 0) / (sum(seconds) / len(seconds)),
        "internal": pick(internal),
        "external_name": name,
        "external": pick(ext),
        "per_device": per_device,
    }


def _v(m: dict, key: str, pct: bool = False) -> str:
    v, ci = m.get(key), m.get(f"{key}_ci95")
    if v is None:
        return "-"
    f = (lambda x: f"{100 * x:.1f}%") if pct else (lambda x: f"{x:.3f}")
    return f(v) + (f" ({f(ci[0])}-{f(ci[1])})" if ci else "")


def cpu_text(cpu: dict) -> str:
    """``"AMD EPYC ..., 2 cores, no AVX-512"``."""
    return f"{cpu['model']}, {cpu['cores']} cores, {'with' if cpu['avx512'] else 'no'} AVX-512, no GPU"


def markdown(result: dict) -> str:
    """The BENCHMARKS.md section."""
    runs = sorted(result["runs"], key=lambda r: (r["direction"], r["task"], r["recipe"], r["fold"], r["seed"]))
    lines = [
        "## External validation: BUSI <-> BUS-BRA (issue 21)",
        "",
        *[f"Command: `{c}`  " for c in result["commands"]],
        f"Machine: {cpu_text(result['cpu'])}. Date: {result['date']}. Timings are of runs that shared the 2 cores with "
        "another training run: they are not speed figures.",
        "",
        "Data: BUSI (Al-Dhabyani et al., Data in Brief 28:104863, 2020), 780 images from one hospital in Cairo; "
        "BUS-BRA (Gomez-Flores et al., Medical Physics 51(4):3110-3123, 2024), 1,875 images of 1,064 patients "
        "from Rio de Janeiro, four scanners, benign and malignant only. " + result["protocol"],
        "",
        "Segmentation: Dice per image (mean), share of images below Dice 0.5.",
        "",
        "| direction | recipe | fold | seed | internal Dice | external Dice | external, no lesion gate "
        "| external below 0.5 | s/epoch | scored at |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in (r for r in runs if r["task"] == "seg"):
        lines.append(
            f"| {r['direction']} -> {r['external_name']} | {r['recipe']} | {r['fold']} | {r['seed']} | "
            f"{_v(r['internal'], 'dice')} | {_v(r['external'], 'dice')} | {_v(r['external'], 'ungated_dice')} | "
            f"{_v(r['external'], 'dice_below_0.5', True)} | {r['seconds_per_epoch']:.0f} | {r.get('commit', '')} |"
        )
    lines += [
        "",
        "Classification: malignant-vs-benign AUC from P(malignant) on the lesion images; lesion images called "
        "normal; sensitivity and specificity at the cut chosen on the internal validation fold.",
        "",
        "| direction | recipe | fold | seed | internal AUC (m vs b) | external AUC (m vs b) | external AUC, "
        "P(m)/(P(b)+P(m)) | lesions called normal (ext.) | sensitivity (ext.) | specificity (ext.) | scored at |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in (r for r in runs if r["task"] == "cls"):
        e = r["external"]
        lines.append(
            f"| {r['direction']} -> {r['external_name']} | {r['recipe']} | {r['fold']} | {r['seed']} | "
            f"{_v(r['internal'], 'malignant_auc')} | {_v(e, 'malignant_auc')} | {_v(e, 'malignant_auc_renorm')} | "
            f"{_v(e, 'lesion_called_normal', True)} | {_v(e, 'sensitivity', True)} | {_v(e, 'specificity', True)} | "
            f"{r.get('commit', '')} |"
        )
    device_rows = [r for r in runs if r["per_device"]]
    if device_rows:
        lines += [
            "",
            "Per BUS-BRA scanner (external rows; images per scanner in brackets):",
            "",
            "| task | recipe | fold | seed | scanner | Dice or AUC (m vs b) | below 0.5 or called normal |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in device_rows:
            for device, d in r["per_device"].items():
                main_key, share = (
                    ("dice", "below_0.5") if r["task"] == "seg" else ("malignant_auc", "lesion_called_normal")
                )
                lines.append(
                    f"| {r['task']} | {r['recipe']} | {r['fold']} | {r['seed']} | {device} ({d['n']}) | "
                    f"{_v(d, main_key)} | {_v(d, share, True)} |"
                )
    return "\n".join([*lines, ""])


def row_of(args: argparse.Namespace, recipe: str, task: str, direction: str, fold: int, seed: int) -> dict:
    """Train or read one row and return it."""
    if recipe == "tta":
        run, internal, external = score_tta(args, task, direction, fold, seed)
        return read_row(run, recipe, task, direction, fold, seed, scored=(internal, external))
    run = train_one(args, recipe, task, direction, fold, seed)
    if recipe == "basicunet":
        return basicunet_row(run, direction, fold, seed)
    return read_row(run, recipe, task, direction, fold, seed)


def add_site_args(p: argparse.ArgumentParser, project: Path) -> None:
    """``--folds``, ``--seeds``, the two datasets and the run folders (``project`` by default)."""
    p.add_argument("--folds", type=int, nargs="+", default=[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--busi", type=Path, default=BUSI_DIR, help="BUSI folder")
    p.add_argument("--busbra", type=Path, default=BUSBRA_DIR, help="BUS-BRA folder")
    p.add_argument("--project", type=Path, default=project, help="run folders")


def datasets_missing(args: argparse.Namespace) -> bool:
    """Print a clear error and return True when ``--busi`` or ``--busbra`` does not exist."""
    for d in (args.busi, args.busbra):
        if not d.exists():
            print(f"error: dataset not found: {d}", file=sys.stderr)
            return True
    return False


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipes", nargs="+", choices=list(RECIPES), default=["baseline"])
    p.add_argument("--tasks", nargs="+", choices=["seg", "cls"], default=["seg", "cls"])
    p.add_argument("--directions", nargs="+", choices=["busi", "busbra"], default=["busi"])
    add_site_args(p, REPO / "benchmarks" / "runs" / "external")
    p.add_argument(
        "--monai-python",
        type=Path,
        default=REPO / ".venv-monai" / "bin" / "python",
        help="a Python with PyTorch and MONAI beside the project's packages, for the basicunet recipe",
    )
    add_output_args(p, SECTION)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if render_from_json(args, SECTION, markdown):
        return 0
    if datasets_missing(args):
        return 2
    args.project = args.project.resolve()
    command = command_line("external.py", argv)
    protocol = (
        "train.py defaults (segmentation: U-Net, 96 px, 20 epochs; classification: EfficientNet-B0, 128 px, "
        "20 epochs), fold of the training site's grouped splits per row, no pretrained weights."
    )
    for recipe in args.recipes:
        for task in args.tasks:
            for direction in args.directions:
                for fold in args.folds:
                    for seed in args.seeds:
                        if recipe in SEG_ONLY and task != "seg":
                            continue
                        row = {**row_of(args, recipe, task, direction, fold, seed), "commit": head_commit()}
                        result = {
                            "command": command,
                            "protocol": protocol,
                            "cpu": cpu_info(),
                            "date": time.strftime("%Y-%m-%d"),
                            "runs": [row],
                        }
                        merged = merge_previous(args.json, result, KEY)
                        write_json(args.json, merged)
                        write_section(args.markdown, SECTION, markdown(merged))
                        print(json.dumps({k: row[k] for k in ("internal", "external")}, indent=1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
