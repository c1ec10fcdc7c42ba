"""Shared by the benchmark scripts: malloc settings and BENCHMARKS.md sections."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the project's packages, also without `pip install -e .`

from core.atomic import write_json as write_json  # noqa: E402  (re-exported for the benchmark scripts)
from core.atomic import write_text  # noqa: E402

BUSI = REPO.parent / "shared" / "datasets" / "Dataset_BUSI_with_GT"
NO_TRIM_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "17179869184",
    "MALLOC_TRIM_THRESHOLD_": "17179869184",
}
VARIANTS = {"default": {}, "no-trim": NO_TRIM_ENV}
"""Each benchmark runs once per entry, in its own process: glibc's defaults, and no trimming."""


def variant_env(name: str) -> dict[str, str]:
    """This process's environment with exactly the malloc settings of variant ``name``."""
    env = {k: v for k, v in os.environ.items() if k not in NO_TRIM_ENV}
    return {**env, **VARIANTS[name]}


def write_section(path: Path, name: str, body: str) -> None:
    """Replace (or append) the section between ``<!-- name:start -->`` and ``<!-- name:end -->``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    block = f"{start}\n{body}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    write_text(path, text)


def add_output_args(parser: argparse.ArgumentParser, section: str) -> None:
    """``--json``, ``--markdown`` and ``--from-json`` for a benchmark writing ``section``."""
    parser.add_argument(
        "--json",
        type=Path,
        default=REPO / "benchmarks" / "results" / f"{section}.json",
        help="where to write the JSON results",
    )
    parser.add_argument("--markdown", type=Path, default=REPO / "BENCHMARKS.md", help="BENCHMARKS.md to update")
    parser.add_argument("--from-json", type=Path, help="re-render the BENCHMARKS.md section from saved results")


def add_training_run_args(parser: argparse.ArgumentParser, section: str) -> None:
    """Flags shared by the BUSI training benchmarks: data, malloc variants, run folder and output."""
    parser.add_argument("--data-dir", type=Path, default=BUSI, help="BUSI folder (default: ../shared BUSI)")
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), help="malloc settings to run under"
    )
    parser.add_argument("--project", type=Path, default=REPO / "benchmarks" / "runs", help="where the runs go")
    add_output_args(parser, section)
    parser.add_argument("--no-markdown", action="store_true", help="do not touch BENCHMARKS.md (smoke runs)")


def render_from_json(args: argparse.Namespace, section: str, markdown: Callable[[dict], str]) -> bool:
    """If ``--from-json`` was given, re-render ``section`` from it and return True."""
    if not args.from_json:
        return False
    write_section(args.markdown, section, markdown(json.loads(args.from_json.read_text())))
    print(f"Wrote the '{section}' section of {args.markdown} from {args.from_json}")
    return True


def head_commit(repo: Path = REPO) -> str:
    """The short commit of ``repo``'s HEAD (this repository's by default), recorded with every run."""
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()


def command_line(script: str, argv: list[str] | None) -> str:
    """How the user invoked benchmark ``script`` (e.g. ``"seg_busi.py"``), for the results."""
    return " ".join([f"python benchmarks/{script}", *(sys.argv[1:] if argv is None else argv)])


def history_summary(rows: list[dict], train_images: int) -> dict:
    """Last and best validation Dice/IoU and training speed from per-epoch rows.

    Each row holds ``epoch``, ``val_dice``, ``val_iou``, ``train_seconds`` and ``epoch_seconds``.
    Speed leaves out the first epoch, which also traces the graph and fills caches.
    """
    best = max(rows, key=lambda r: r["val_dice"])
    last = rows[-1]
    timed = rows[1:] or rows
    return {
        "epochs": len(rows),
        "last": {"epoch": int(last["epoch"]), "dice": last["val_dice"], "iou": last["val_iou"]},
        "best": {"epoch": int(best["epoch"]), "dice": best["val_dice"], "iou": best["val_iou"]},
        "seconds_per_epoch": sum(r["epoch_seconds"] for r in timed) / len(timed),
        "train_images_per_second": train_images * len(timed) / sum(r["train_seconds"] for r in timed),
    }


def model_cost(model: str, img_size: int, **options) -> dict:
    """Parameters and forward GFLOPs per image of the registered ``model`` built at ``img_size``.

    ``options`` go to the builder (architecture options such as ``patch_size``).

    FLOPs come from TensorFlow's profiler on the frozen inference graph of one image (a
    multiply and an add count as two), so attention and dense layers count as well as
    convolutions.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from models.registry import build_model

    net = build_model(model, img_size=img_size, **options)

    @tf.function(autograph=False)
    def forward(x):
        return net(x, training=False)

    spec = tf.TensorSpec([1, img_size, img_size, net.input_shape[-1]], tf.float32)
    graph = convert_variables_to_constants_v2(forward.get_concrete_function(spec)).graph
    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    flops = tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op", options=options)
    return {"params": int(net.count_params()), "gflops": flops.total_float_ops / 1e9}


def cost_table(runs: list[dict], img_size: int, label: Callable[[dict], str] | None = None) -> list[str]:
    """Markdown lines: parameters and GFLOPs per image of each model whose rows recorded them.

    ``label`` names a row's model (default its ``model``); rows with the same label share a line.
    """
    label = label or (lambda r: r["model"])
    costs = {label(r): (r["params"], r["gflops"]) for r in runs if "params" in r}
    if not costs:
        return []
    lines = ["", f"| model | parameters | GFLOPs per {img_size}x{img_size} image (forward) |", "|---|---|---|"]
    lines += [f"| {m} | {p / 1e6:.2f}M | {g:.2f} |" for m, (p, g) in costs.items()]
    return lines


def mean_sd(values: np.ndarray, signed: bool = False) -> str:
    """``"0.746 +- 0.027"``: mean and sample standard deviation; ``signed`` puts a sign on the mean."""
    if values.size < 2:
        raise ValueError(f"a sample standard deviation needs at least 2 values. Received: {values.size}")
    return f"{values.mean():{'+' if signed else ''}.3f} +- {values.std(ddof=1):.3f}"


def spread(runs: list[dict], over: str = "seed") -> str:
    """Mean, sample standard deviation and range of the last- and best-epoch Dice of ``runs``.

    ``over`` names the field the runs differ in (``"seed"`` or ``"fold"``); the text starts with
    its values, e.g. ``"seeds 0, 1): ..."``, to close a parenthesis the caller opened.
    """
    parts = []
    for name, which in (("last-epoch Dice", "last"), ("best Dice", "best")):
        d = np.array([r[which]["dice"] for r in runs])
        parts.append(f"{name} {mean_sd(d)} (range {d.min():.3f}-{d.max():.3f})")
    values = ", ".join(str(r[over]) for r in runs)
    return f"{over}s {values}): {', '.join(parts)}; mean +- standard deviation."


def spread_groups(runs: list[dict], over: str, shared: tuple[str, ...]) -> list[tuple[tuple, list[dict]]]:
    """Runs that agree on the fields ``shared`` and differ in ``over``, for :func:`spread`.

    Returns ``(values of shared, runs sorted by over)`` for every group of two or more runs,
    groups in order of their first run.
    """
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault(tuple(r[k] for k in shared), []).append(r)
    return [(values, sorted(rows, key=lambda r: r[over])) for values, rows in groups.items() if len(rows) > 1]


def fold_sizes(runs: list[dict]) -> str:
    """Training and validation cases of each fold in ``runs``, e.g. ``"fold 0: 516 training, 129 validation"``."""
    sizes = {r["fold"]: (r["train_cases"], r["val_cases"]) for r in runs}
    return "; ".join(f"fold {f}: {t} training, {v} validation" for f, (t, v) in sorted(sizes.items()))


def data_dir_missing(args: argparse.Namespace) -> bool:
    """Print a clear error and return True when ``--data-dir`` is not a folder."""
    if args.data_dir.is_dir():
        return False
    print(f"error: `--data-dir` does not exist: {args.data_dir}", file=sys.stderr)
    return True


def save_runs(
    args: argparse.Namespace,
    section: str,
    result: dict,
    key: tuple[str, ...],
    markdown: Callable[[dict], str],
    defaults: dict | None = None,
) -> dict:
    """Merge ``result`` into ``--json`` (see :func:`merge_previous`), write it and re-render the section.

    Benchmarks call this after every run, so an interrupted invocation keeps the runs it finished.
    Returns the merged result.
    """
    result = merge_previous(args.json, result, key, defaults)
    write_json(args.json, result)
    print(f"Wrote {args.json}", flush=True)
    if not args.no_markdown:
        write_section(args.markdown, section, markdown(result))
        print(f"Wrote the '{section}' section of {args.markdown}", flush=True)
    return result


def merge_previous(path: Path, result: dict, key: tuple[str, ...], defaults: dict | None = None) -> dict:
    """Keep earlier runs of the same protocol that this invocation did not repeat.

    Runs are matched on the fields ``key``; a field a run lacks counts as its value in ``defaults``,
    or ``""``. A run measured again replaces the old one.
    Each run records the command that measured it; ``commands`` lists those still present.
    """
    runs = [{**r, "command": result["command"]} for r in result["runs"]]
    if path.exists():
        old = json.loads(path.read_text())
        if old.get("protocol") == result["protocol"]:
            defaults = defaults or {}
            new_keys = {tuple(r.get(k, defaults.get(k, "")) for k in key) for r in runs}
            previous = [{"command": old.get("command", ""), **r} for r in old["runs"]]
            kept = [r for r in previous if tuple(r.get(k, defaults.get(k, "")) for k in key) not in new_keys]
            runs = kept + runs
    commands = list(dict.fromkeys(r["command"] for r in runs))
    return {**result, "runs": runs, "commands": commands}


def busi_and_busbra_missing(args: argparse.Namespace) -> bool:
    """Print an error and return True when ``--busi`` or ``--busbra`` (its ``manifest.csv``) does not exist."""
    for path, what in ((args.busi, "--busi"), (args.busbra / "manifest.csv", "--busbra")):
        if not path.exists():
            print(f"error: `{what}` not found: {path}", file=sys.stderr)
            return True
    return False


def protocol_for(protocol: str, epochs: int, default_epochs: int) -> str:
    """A benchmark's protocol line, with ``epochs`` in place of its default when another was asked for."""
    return protocol if epochs == default_epochs else protocol.replace(f"{default_epochs} epochs", f"{epochs} epochs")
