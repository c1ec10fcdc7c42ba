"""EfficientNet-B0, ResNet-50, ResNet-50+SE, DeiT-Tiny and MiT-B0 from scratch on BUSI, plus their soft vote.

Protocol: all three classes, fold 0 of the duplicate-grouped splits, 224x224,
batch 16, Adam 1e-3 with cosine decay, light augmentation, no ImageNet weights,
a fixed number of epochs (``--epochs``, default 30) and no early stopping. The
class imbalance is handled by ``--imbalance``: ``ce-oversample`` (default; plain
cross-entropy, classes drawn equally often) or ``focal`` (focal loss with
per-class alpha from the training split's inverse class frequencies).
Each model trains in its own ``train.py`` process; then the last epoch's weights
are evaluated on the validation fold (the honest figure), next to the best
epoch's (chosen on the same fold, so optimistic). Metrics carry 95% bootstrap
intervals. The soft-vote ensemble averages the last-epoch probabilities of every
model run with the same imbalance handling, epochs and malloc variant, including
runs from earlier invocations recorded in the JSON. Rows also record the model's parameters
and forward GFLOPs per 224x224 image (``_common.model_cost``).

``--lr``, ``--augment``, ``--patch-size``, ``--num-layers`` and ``--drop-path`` change the
protocol, to measure what moves a model's result (the transformers' gap to the CNNs, say); the
row records the changes (``change``), its run folder and table label carry them, and it joins
no soft vote.

Usage:
    python benchmarks/cls_busi.py
    python benchmarks/cls_busi.py --models efficientnet_b0 --epochs 2 --no-markdown
    python benchmarks/cls_busi.py --models efficientnet_b0 --imbalance focal --epochs 15
    python benchmarks/cls_busi.py --ensemble-only
    python benchmarks/cls_busi.py --models deit_tiny mit_b0_cls
    python benchmarks/cls_busi.py --models deit_tiny --variants no-trim --augment strong
    python benchmarks/cls_busi.py --timing-only --epochs 3 --variants no-trim
    python benchmarks/cls_busi.py --from-json benchmarks/results/cls_busi.json
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

from _common import (
    REPO,
    VARIANTS,
    add_training_run_args,
    command_line,
    cost_table,
    data_dir_missing,
    head_commit,
    merge_previous,
    model_cost,
    render_from_json,
    variant_env,
    write_json,
    write_section,
)

from models.options import ARCHITECTURE_OPTIONS as ARCHITECTURE  # train.py's options a run may change

SECTION = "cls_busi"
MODELS = ("efficientnet_b0", "resnet50", "resnet50_se", "deit_tiny", "mit_b0_cls")
# How the class imbalance is handled: train.py flags of each choice.
IMBALANCE = {
    "ce-oversample": ["--loss", "ce", "--oversample"],
    "focal": ["--loss", "focal"],
}
KEYS = ("accuracy", "macro_f1", "macro_auc")
KEY = ("model", "variant", "imbalance", "epochs", "change")
"""The fields that tell runs apart (older rows lack ``change``: the protocol's own)."""
PROTOCOL = (
    "normal + benign + malignant, fold 0, 224x224, batch 16, Adam 1e-3 cosine, light augmentation, random init, float32"
)
"""What every run shares (a row's ``change`` aside); rows of another protocol are not merged."""
AUGMENT = "light"
"""The protocol's augmentation preset."""
LR = 1e-3
"""The protocol's learning rate (Adam, batch 16)."""


def changes(args: argparse.Namespace) -> dict:
    """What ``args`` change of the protocol: the learning rate, augmentation preset and architecture options set."""
    out = {"lr": args.lr} if args.lr != LR else {}
    out |= {"augment": args.augment} if args.augment != AUGMENT else {}
    return out | {k: getattr(args, k) for k in ARCHITECTURE if getattr(args, k) is not None}


def change_label(change: dict) -> str:
    """``"augment=strong, patch_size=32"``; empty for the protocol itself."""
    return ", ".join(f"{k}={v}" for k, v in change.items())


def model_label(r: dict) -> str:
    """A row's model with the change it measures, e.g. ``deit_tiny (augment=strong)``."""
    return f"{r['model']} ({r['change']})" if r.get("change") else r["model"]


def _last_epoch_report(run_dir: Path) -> dict:
    """Evaluate ``weights/last.keras`` on the run's validation fold (in this process)."""
    import keras

    from config.train import TrainConfig
    from evaluation.base import EvalRequest
    from evaluation.cls import evaluate_cls
    from evaluation.run_files import load_inference_model
    from training.data import fold_records, prepare_data

    cfg = TrainConfig.load(run_dir / "config.json")
    _, val = fold_records(prepare_data(cfg), cfg, cfg.fold)
    model = load_inference_model(run_dir / "weights" / "last.keras")  # registers the custom layers first
    report = evaluate_cls(model, cfg, EvalRequest(val, run_dir / "last_epoch"))
    keras.backend.clear_session()
    return report


def _pick(report: dict) -> dict:
    return {k: report[k] for k in KEYS} | {f"{k}_ci95": report[f"{k}_ci95"] for k in KEYS}


def _train(model: str, variant: str, args: argparse.Namespace, name: str) -> tuple[Path, list[dict], float]:
    """Run ``train.py`` for one model in its own process; return its folder, history rows and wall time."""
    change = changes(args)
    arch = [f for k in ARCHITECTURE if k in change for f in (f"--{k.replace('_', '-')}", str(change[k]))]
    cmd = [
        sys.executable, "train.py", "--task", "cls", "--model", model, "--data-dir", str(args.data_dir),
        "--fold", "0", "--img-size", "224", "--epochs", str(args.epochs), "--batch-size", "16", "--lr", str(args.lr),
        "--schedule", "cosine", *IMBALANCE[args.imbalance], "--augment", args.augment, "--weights", "none",
        "--patience", "0", "--mixed-precision", "off", "--project", str(args.project), "--name", name, "--exist-ok",
        *arch,
    ]  # fmt: skip
    run_dir = Path(args.project) / "cls" / name
    rows = _history(run_dir)
    if args.reuse_runs and len(rows) == args.epochs and (run_dir / "metrics.json").is_file():
        print(f"== {name}: reusing the finished run in {run_dir}", flush=True)
        return run_dir, rows, sum(r["epoch_seconds"] for r in rows)
    print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, env=variant_env(variant), check=True)
    wall = time.perf_counter() - t0
    return run_dir, _history(run_dir), wall


def _history(run_dir: Path) -> list[dict]:
    """The rows of ``history.csv`` (empty if the run has none yet)."""
    if not (run_dir / "history.csv").is_file():
        return []
    with open(run_dir / "history.csv", newline="") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


SLOW = 1.3  # an epoch this many times the fastest one counts as slow


def _speed(rows: list[dict], train_cases: int) -> dict:
    """Mean seconds per epoch and training images/s, leaving out the first epoch (tracing, cache filling).

    Also the fastest epoch and how many epochs took over ``SLOW`` times as long: under glibc's
    default malloc some epochs run much slower (page faults after memory is returned).
    """
    timed = rows[1:] or rows
    train_images = train_cases // 16 * 16
    fastest = min(r["epoch_seconds"] for r in timed)
    return {
        "timed_epochs": len(timed),
        "seconds_per_epoch": sum(r["epoch_seconds"] for r in timed) / len(timed),
        "train_images_per_second": train_images * len(timed) / sum(r["train_seconds"] for r in timed),
        "fastest_epoch_seconds": fastest,
        "slow_epochs": sum(r["epoch_seconds"] > SLOW * fastest for r in timed),
    }


def _stamp() -> dict:
    """When and at which code a run is measured (the machine under this VM changes between sessions)."""
    return {"date": time.strftime("%Y-%m-%d"), "commit": head_commit()}


def run_name(model: str, variant: str, args: argparse.Namespace) -> str:
    """The run folder's name: model, imbalance, malloc variant and any change (``augment-strong``)."""
    change = "".join(f"-{k.replace('_', '-')}-{v}" for k, v in changes(args).items())
    return f"{model}-{args.imbalance}-{variant}{change}"


def run_one(model: str, variant: str, args: argparse.Namespace) -> dict:
    """Train one model in its own process, then evaluate its last epoch."""
    stamp = _stamp()  # the code the training process starts with
    run_dir, rows, wall = _train(model, variant, args, run_name(model, variant, args))
    best = json.loads((run_dir / "metrics.json").read_text())
    last = _last_epoch_report(run_dir)
    return {
        "model": model,
        "variant": variant,
        "imbalance": args.imbalance,
        "epochs": len(rows),
        "change": change_label(changes(args)),
        "last": _pick(last),
        "best": {**_pick(best), "epoch": best["best_epoch"]},
        "predicted_share": [sum(col) / last["n_images"] for col in zip(*last["confusion"], strict=True)],
        **_speed(rows, best["train_cases"]),
        "train_cases": best["train_cases"],
        "val_cases": best["val_cases"],
        "wall_seconds": wall,
        "run_dir": str(run_dir),
        **model_cost(model, 224, **{k: v for k, v in changes(args).items() if k in ARCHITECTURE}),
        **stamp,
    }


def time_one(model: str, variant: str, args: argparse.Namespace) -> dict:
    """Train one model for a few epochs only to time it (``--timing-only``); no evaluation."""
    stamp = _stamp()
    run_dir, rows, _ = _train(model, variant, args, f"{run_name(model, variant, args)}-timing")
    train_cases = json.loads((run_dir / "metrics.json").read_text())["train_cases"]
    return {
        "model": model,
        "variant": variant,
        "imbalance": args.imbalance,
        "epochs": len(rows),
        "change": change_label(changes(args)),
        **stamp,
        "epoch_seconds": [round(r["epoch_seconds"], 1) for r in rows],
    } | _speed(rows, train_cases)


def soft_vote(runs: list[dict], out: Path) -> dict:
    """Soft-vote ensemble of the members' last-epoch predictions."""
    import ensemble

    members = []
    for r in runs:  # ensemble.py reads <run>/predictions.csv: point it at the last-epoch evaluation
        member = out / "members_last" / Path(r["run_dir"]).name
        member.mkdir(parents=True, exist_ok=True)
        (member / "config.json").write_text((Path(r["run_dir"]) / "config.json").read_text())
        (member / "predictions.csv").write_text((Path(r["run_dir"]) / "last_epoch" / "predictions.csv").read_text())
        members.append(str(member))
    res = ensemble.main(ensemble.parse_args(["--runs", *members, "--method", "soft", "--out", str(out / "soft")]))
    return _pick(res["ensemble"])


def soft_votes(runs: list[dict], project: Path, previous: dict) -> dict:
    """Soft-vote every group of runs sharing imbalance, epochs and malloc variant (two or more models).

    Runs may come from earlier invocations (merged from the JSON). A group whose members'
    last-epoch predictions are no longer on disk keeps its ``previous`` entry, if any. Runs that
    change the protocol (``change``) join no vote.
    """
    groups: dict[str, list[dict]] = {}
    for r in (r for r in runs if not r.get("change")):
        groups.setdefault(f"{r['imbalance']}-{r['epochs']}-{r['variant']}", []).append(r)
    ensembles = {}
    for key, members in groups.items():
        if len({m["model"] for m in members}) < 2:
            continue
        models = [m["model"] for m in members]
        if all((Path(m["run_dir"]) / "last_epoch" / "predictions.csv").is_file() for m in members):
            scores = soft_vote(members, project / "cls" / f"ensemble-{key}")
            ensembles[key] = {
                **scores,
                "models": models,
                **{k: members[0][k] for k in ("imbalance", "epochs", "variant")},
            }
        elif previous.get(key, {}).get("models") == models:
            ensembles[key] = previous[key]
    return ensembles


def _cell(d: dict, k: str) -> str:
    lo, hi = d[f"{k}_ci95"]
    return f"{d[k]:.3f} ({lo:.2f}-{hi:.2f})"


def _label(*parts: str | None) -> str:
    """The non-empty ``parts``, comma-separated."""
    return ", ".join(p for p in parts if p)


def _when(r: dict) -> str:
    """When and at which code a run was measured, as far as it recorded (older runs lack the commit)."""
    return _label(r.get("date"), r.get("commit") and f"code {r['commit']}")


def _speed_row(r: dict, run: str) -> str:
    return (
        f"| {model_label(r)} | {r['imbalance']} | {r['variant']} | {run} | {r['timed_epochs']} | "
        f"{r['seconds_per_epoch']:.1f} | {r['train_images_per_second']:.1f} | {r['fastest_epoch_seconds']:.1f} | "
        f"{r['slow_epochs']} |"
    )


def markdown(result: dict) -> str:
    """The BENCHMARKS.md section."""
    r0 = result["runs"][0]
    lines = [
        "## BUSI classification from scratch (issue: classification)",
        "",
        *[f"Command: `{c}`  " for c in result["commands"]],
        f"Protocol: {result['protocol']}. Each row gives the date and, where recorded, the code it was measured at.",
        "",
        f"Validation is fold 0 of the duplicate-grouped splits ({r0['train_cases']} training, "
        f"{r0['val_cases']} validation images, all three classes). Values are the last epoch's weights with "
        "95% bootstrap intervals; the best epoch (by validation macro F1, chosen on the same fold, so "
        "optimistic) is given for comparison. Seconds per epoch and images/s leave out the first epoch.",
        "",
        "Imbalance: `ce-oversample` is plain cross-entropy with every class drawn equally often by the "
        "pipeline (`--loss ce --oversample`); `focal` is focal loss with per-class alpha from inverse class "
        "frequencies, gamma 2 (`--loss focal`).",
        "",
        "A model followed by changes in brackets ran the protocol with those changes (`lr`, `patch_size`, "
        "`num_layers`, `drop_path`: the `train.py` flags of those names; `augment=strong`: `--augment strong`).",
        "",
        "| model | imbalance | epochs | malloc | accuracy | macro F1 | macro AUC | best-epoch macro F1 (epoch) | "
        "predicted share normal/benign/malignant | s/epoch | train img/s | measured |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        share = "/".join(f"{s:.2f}" for s in r["predicted_share"])
        lines.append(
            f"| {model_label(r)} | {r['imbalance']} | {r['epochs']} | {r['variant']} | "
            f"{_cell(r['last'], 'accuracy')} | {_cell(r['last'], 'macro_f1')} | {_cell(r['last'], 'macro_auc')} | "
            f"{r['best']['macro_f1']:.3f} ({r['best']['epoch']}) | {share} | "
            f"{r['seconds_per_epoch']:.1f} | {r['train_images_per_second']:.1f} | {_when(r)} |"
        )
    for e in result.get("ensembles", {}).values():
        lines.append(
            f"| soft vote of {' + '.join(e['models'])} | {e['imbalance']} | {e['epochs']} | {e['variant']} | "
            f"{_cell(e, 'accuracy')} | {_cell(e, 'macro_f1')} | {_cell(e, 'macro_auc')} | | | | | |"
        )
    lines += cost_table(result["runs"], 224, model_label)
    protocol = [r for r in result["runs"] if not r.get("change")]
    done = {(r["model"], r["variant"]) for r in protocol if r["imbalance"] == "ce-oversample"}
    timed = done | {(t["model"], t["variant"]) for t in result.get("timings", [])}
    missing = [f"{m} ({v})" for m in MODELS for v in VARIANTS if (m, v) not in timed]
    if missing:
        lines += ["", f"Not yet measured with this protocol: {', '.join(missing)}."]
    if result.get("timings"):
        lines += [
            "",
            "Speed under both malloc settings. Rows marked accuracy run are the runs above (every epoch after "
            "the first); timing runs are short runs of the same training, timed the same way and not evaluated, "
            "dated because the machine under this VM has changed between sessions "
            f"({'; '.join(f'`{c}`' for c in dict.fromkeys(t['command'] for t in result['timings']))}).",
            "",
            f"| model | imbalance | malloc | run | timed epochs | s/epoch | train img/s | fastest epoch (s) | "
            f"epochs over {SLOW}x the fastest |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in result["runs"]:
            lines.append(_speed_row(r, _label(f"accuracy run, {r['epochs']} epochs", _when(r))))
        for t in result["timings"]:
            lines.append(_speed_row(t, _label(f"timing run, {t['epochs']} epochs", _when(t))))
    lines += [
        "",
        "Reference measured on this machine (from the issue): MONAI 1.6's EfficientNet-B0 from scratch with "
        "plain cross-entropy and Adam 1e-3 (224x224, 15 epochs, 14.7 images/s) predicts benign for every "
        "image: accuracy 0.56, macro F1 0.24, macro AUC 0.65. Target: our EfficientNet-B0 macro F1 >= 0.60 "
        "and macro AUC >= 0.80 within 30 epochs.",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=30, help="epochs per run (fixed, no early stopping)")
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="models to train")
    p.add_argument(
        "--imbalance", choices=list(IMBALANCE), default="ce-oversample", help="how the class imbalance is handled"
    )
    p.add_argument(
        "--reuse-runs",
        action="store_true",
        help="do not retrain a run whose folder already holds --epochs epochs (its wall time is then the "
        "sum of its epochs)",
    )
    p.add_argument(
        "--timing-only",
        action="store_true",
        help="train each model for --epochs (use 3) only to time it; recorded apart from the accuracy runs",
    )
    p.add_argument(
        "--ensemble-only",
        action="store_true",
        help="train nothing: recompute the soft-vote ensembles of the runs already in --json",
    )
    from pipeline.augment import PRESETS

    p.add_argument("--lr", type=float, default=LR, help="a change: train.py --lr")
    p.add_argument("--augment", choices=list(PRESETS), default=AUGMENT, help="a change: augmentation preset")
    p.add_argument("--patch-size", type=int, help="a change: train.py --patch-size (deit_tiny)")
    p.add_argument("--num-layers", type=int, help="a change: train.py --num-layers (deit_tiny)")
    p.add_argument("--drop-path", type=float, help="a change: train.py --drop-path (mit_b0_cls)")
    add_training_run_args(p, SECTION)
    return p.parse_args(argv)


def save(args: argparse.Namespace, result: dict) -> None:
    """Write the JSON results and BENCHMARKS.md; called after every run.

    An interrupted invocation thus keeps the runs it finished. Timings saved before any accuracy
    run exists are written to the JSON only: the section describes the accuracy runs first.
    """
    write_json(args.json, result)
    print(f"Wrote {args.json}", flush=True)
    if args.no_markdown:
        return
    if not result.get("runs"):
        print(f"{args.json} holds no accuracy runs yet, so the section of {args.markdown} was left as it is.")
        return
    write_section(args.markdown, SECTION, markdown(result))


def with_ensembles(result: dict, args: argparse.Namespace, previous: dict) -> dict:
    """``result`` with the soft votes of its accuracy runs (only runs change them, not timings)."""
    return result | {"ensembles": soft_votes(result["runs"], Path(args.project), previous.get("ensembles", {}))}


def main(argv=None) -> int:
    args = parse_args(argv)
    if render_from_json(args, SECTION, markdown):
        return 0
    if data_dir_missing(args):
        return 2
    previous = json.loads(args.json.read_text()) if args.json.exists() else {}
    command = command_line("cls_busi.py", argv)
    if args.ensemble_only:
        if not previous:
            print(f"error: `--ensemble-only` needs an earlier result in {args.json}", file=sys.stderr)
            return 2
        save(args, with_ensembles(previous, args, previous))
    elif args.timing_only:
        timings = []
        for v in args.variants:
            for m in args.models:
                timings.append(time_one(m, v, args) | {"command": command})
                keys = {(t["model"], t["variant"], t["imbalance"], t.get("change", "")) for t in timings}
                kept = [
                    t
                    for t in previous.get("timings", [])
                    if (t["model"], t["variant"], t["imbalance"], t.get("change", "")) not in keys
                ]
                save(args, previous | {"timings": kept + timings, "ensembles": previous.get("ensembles", {})})
    else:
        runs = []
        for variant in args.variants:
            for model in args.models:
                runs.append(run_one(model, variant, args))
                result = {"command": command, "protocol": PROTOCOL, "runs": runs}  # each run keeps its own date
                result = merge_previous(args.json, result, KEY)
                save(args, with_ensembles(result | {"timings": previous.get("timings", [])}, args, previous))
    return 0


if __name__ == "__main__":
    sys.exit(main())
