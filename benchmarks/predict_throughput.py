"""Images/s of predict.py on a folder of real images, today's code against an older checkout, beside the model.

For each model (a run folder, or a SavedModel export: ``--runs``) and each dataset (``--datasets``:
BUSI's three class folders, BUS-BRA's ``Images``): the wall time of ``python predict.py --model MODEL
--source SOURCES`` with this checkout, with and without overlays, and with ``--old-code`` (another
checkout of the project, e.g. a git worktree of the commit before the change) with overlays; and, for a
run folder, the model's own forward pass at its input size on batches of 8 (compiled with
``tf.function``, in its own process), so the share of predict's time spent outside the model shows.
Every figure is measured in its own process, once per malloc variant (glibc's defaults, and no
trimming). The old code must be able to read the model (one written by the older code can be read by
both). Results merge into ``--json`` by (model, dataset, malloc), so the matrix can be measured in pieces.

Usage:
    git worktree add /tmp/old fd7c1ca
    python benchmarks/predict_throughput.py --runs runs/seg/exp --old-code /tmp/old
    python benchmarks/predict_throughput.py --runs runs/seg/exp runs/seg/exp/saved_model --old-code /tmp/old \
        --datasets BUSI BUS-BRA --variants default
    python benchmarks/predict_throughput.py --from-json benchmarks/results/predict_throughput.json
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    BUSI,
    REPO,
    VARIANTS,
    add_output_args,
    head_commit,
    render_from_json,
    variant_env,
    write_json,
    write_section,
)

from reports.provenance import cpu_model  # noqa: E402  (after _common puts the repo on the path)

SECTION = "predict_throughput"
CLASS_FOLDERS = ("benign", "malignant", "normal")
BUSBRA_IMAGES = BUSI.parent / "BUS-BRA" / "Images"
DATASETS = {"BUSI": [str(BUSI / c) for c in CLASS_FOLDERS], "BUS-BRA": [str(BUSBRA_IMAGES)]}
"""Dataset name -> predict.py's ``--source`` folders: BUSI's 780 images, BUS-BRA's 1,875."""
FORWARD = """
import sys, time, numpy as np
sys.path.insert(0, {repo!r})
import cli  # noqa: F401  (the scripts' oneDNN setting)
import tensorflow as tf
from evaluation.run_files import load_inference_model
model = load_inference_model({weights!r})
forward = tf.function(lambda x: model(x, training=False))  # compiled, as the serving function is
x = tf.constant(np.random.default_rng(0).uniform(0, 255, (8, *model.input_shape[1:])).astype("float32"))
tf.nest.map_structure(lambda t: t.numpy(), forward(x))  # a joint model returns a dict
n, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < 10:
    tf.nest.map_structure(lambda t: t.numpy(), forward(x))
    n += 8
print(n / (time.perf_counter() - t0))
"""


def time_predict(code: Path, run: Path, sources: list[str], variant: str, extra: list[str]) -> dict:
    """Wall seconds and images/s of one predict.py invocation of the checkout ``code``."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "predict.py", "--model", str(run.resolve()), "--source", *sources, "--out", out, *extra]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, cwd=code, env=variant_env(variant), capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if done.returncode not in (0,):
            raise RuntimeError(f"{' '.join(cmd)} failed in {code}:\n{done.stderr[-3000:]}")
        with open(Path(out) / "predictions.csv", newline="") as f:
            n = sum(1 for _ in csv.DictReader(f))
    return {"seconds": seconds, "images": n, "images_per_s": n / seconds}


def time_forward(run: Path, variant: str) -> float:
    """The model's forward images/s on batches of 8 (this checkout's loader)."""
    code = FORWARD.format(repo=str(REPO), weights=str((run / "weights" / "best.keras").resolve()))
    done = subprocess.run([sys.executable, "-c", code], env=variant_env(variant), capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return float(done.stdout.strip().splitlines()[-1])


def _kind(model: Path) -> str:
    """``task`` of a run folder (its config), or ``saved_model`` for an export."""
    config = model / "config.json"
    if config.is_file():
        import json

        return json.loads(config.read_text())["task"]
    return "saved_model"


def measure_one(args: argparse.Namespace, model: Path, dataset: str, variant: str) -> dict:
    """One row: the forward pass (run folders) and predict.py's three invocations."""
    kind = _kind(model)
    row = {"run": str(model), "kind": kind, "dataset": dataset, "variant": variant}
    if kind != "saved_model":
        row["forward_images_per_s"] = time_forward(model, variant)
        print(f"{model} [{variant}]: model forward {row['forward_images_per_s']:.1f} images/s", flush=True)
    for name, code, extra in (
        ("new", REPO, []),
        ("new_no_overlays", REPO, ["--no-overlays"]),
        ("old", args.old_code, []),
    ):
        row[name] = time_predict(code, model, DATASETS[dataset], variant, extra)
        print(
            f"  {dataset} {name}: {row[name]['images_per_s']:.2f} images/s ({row[name]['seconds']:.1f} s)", flush=True
        )
    return {**row, "cpu": cpu_model(), "commit": head_commit(), "old_code": str(args.old_code),
            "old_commit": head_commit(args.old_code)}  # fmt: skip


def _label(r: dict) -> str:
    """The model's name: a run folder's, or ``model/version`` for an export's version folder."""
    path = Path(r["run"])
    return f"{path.parent.name}/{path.name}" if r.get("kind") == "saved_model" and path.name.isdigit() else path.name


def _outside(r: dict) -> str:
    """The share of predict's wall time spent outside the model's forward pass (run folders only)."""
    if "forward_images_per_s" not in r:
        return "—"
    return f"{1 - r['new']['images_per_s'] / r['forward_images_per_s']:.0%}"


def _merge(path: Path, rows: list[dict]) -> dict:
    """Earlier rows of ``path`` that these do not replace, then these (by model, dataset, malloc)."""
    import json

    key = lambda r: (r["run"], r.get("dataset", "BUSI"), r["variant"])  # noqa: E731
    old = json.loads(path.read_text()) if path.is_file() else {"rows": []}
    for r in old["rows"]:  # rows of the first version: one CPU, commit and old code for all
        for k in ("cpu", "commit", "old_code"):
            r.setdefault(k, old.get(k, ""))
    new_keys = {key(r) for r in rows}
    return {"rows": [r for r in old["rows"] if key(r) not in new_keys] + rows}


def markdown(doc: dict) -> str:
    lines = [
        "predict.py on BUSI's 780 images (the three class folders; masks left out) and BUS-BRA's 1,875, one "
        "process per figure; images/s. `old` is the checkout named in the row's `old code`; the time outside the "
        "model is 1 - (new predict / model forward), the model's own compiled forward pass on batches of 8 at its "
        "input size.",
        "",
        "| model | kind | dataset | malloc | model forward | old predict | new predict | new, --no-overlays "
        "| new / old | time outside the model | CPU | code / old code |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        r = {**{k: doc.get(k, "") for k in ("cpu", "commit", "old_code")}, **r}  # the first version's rows
        old, new, bare = (r[k]["images_per_s"] for k in ("old", "new", "new_no_overlays"))
        forward = f"{r['forward_images_per_s']:.1f}" if "forward_images_per_s" in r else "—"
        old_code = r.get("old_commit") or Path(r["old_code"]).name
        lines.append(
            f"| {_label(r)} | {r.get('kind', 'seg')} | {r.get('dataset', 'BUSI')} | {r['variant']} | "
            f"{forward} | {old:.2f} | {new:.2f} | {bare:.2f} | {new / old:.1f}x ({bare / old:.1f}x without overlays) "
            f"| {_outside(r)} | {r['cpu']} | {r['commit']} / {old_code} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", nargs="+", type=Path, default=[], help="run folders to predict with")
    p.add_argument("--old-code", type=Path, help="another checkout of the project to compare with")
    p.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=["BUSI"], help="images to predict")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), help="malloc settings")
    add_output_args(p, SECTION)
    args = p.parse_args(argv)
    if render_from_json(args, SECTION, markdown):
        return
    if not args.runs or args.old_code is None:
        p.error("--runs and --old-code are needed to measure")
    for model in args.runs:
        for dataset in args.datasets:
            for variant in args.variants:
                doc = _merge(args.json, [measure_one(args, model, dataset, variant)])
                write_json(args.json, doc)
                write_section(args.markdown, SECTION, markdown(doc))
    print(f"Wrote {args.json} and the {SECTION} section of {args.markdown}")


if __name__ == "__main__":
    main()
