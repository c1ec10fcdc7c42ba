"""Images/s of predict.py on a folder of real images, today's code against an older checkout, beside the model.

For each run folder: the wall time of ``python predict.py --model RUN --source SOURCES`` with this
checkout, with and without overlays, and with ``--old-code`` (another checkout of the project, e.g. a
git worktree of the commit before the change) with overlays; and the model's own forward pass at its
input size on batches of 8 (compiled with ``tf.function``, in its own process), so the share of
predict's time spent outside the model shows. Every figure is measured in its own process, once per
malloc variant (glibc's defaults, and no trimming). The old code must be able to read the run (a run
written by the older code can be read by both).

Usage:
    git worktree add /tmp/old fd7c1ca
    python benchmarks/predict_throughput.py --runs runs/seg/exp --old-code /tmp/old
    python benchmarks/predict_throughput.py --runs runs/seg/exp --old-code /tmp/old --variants default
    python benchmarks/predict_throughput.py --from-json benchmarks/results/predict_throughput.json
"""

from __future__ import annotations

import argparse
import csv
import platform
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

SECTION = "predict_throughput"
CLASS_FOLDERS = ("benign", "malignant", "normal")
FORWARD = """
import sys, time, numpy as np
sys.path.insert(0, {repo!r})
import cli  # noqa: F401  (the scripts' oneDNN setting)
import tensorflow as tf
from evaluation.run_files import load_inference_model
model = load_inference_model({weights!r})
forward = tf.function(lambda x: model(x, training=False))  # compiled, as the serving function is
x = tf.constant(np.random.default_rng(0).uniform(0, 255, (8, *model.input_shape[1:])).astype("float32"))
forward(x).numpy()
n, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < 10:
    forward(x).numpy()
    n += 8
print(n / (time.perf_counter() - t0))
"""


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


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


def measure(args: argparse.Namespace) -> dict:
    sources = [str(args.data_dir / c) for c in CLASS_FOLDERS]
    rows = []
    for run in args.runs:
        for variant in args.variants:
            row = {"run": str(run), "variant": variant, "forward_images_per_s": time_forward(run, variant)}
            print(f"{run} [{variant}]: model forward {row['forward_images_per_s']:.1f} images/s", flush=True)
            for name, code, extra in (
                ("new", REPO, []),
                ("new_no_overlays", REPO, ["--no-overlays"]),
                ("old", args.old_code, []),
            ):
                row[name] = time_predict(code, run, sources, variant, extra)
                print(f"  {name}: {row[name]['images_per_s']:.2f} images/s ({row[name]['seconds']:.1f} s)", flush=True)
            rows.append(row)
    return {"cpu": cpu_model(), "commit": head_commit(), "old_code": str(args.old_code), "rows": rows}


def markdown(doc: dict) -> str:
    lines = [
        f"CPU: {doc['cpu']}; code {doc['commit']} against the checkout {doc['old_code']}. predict.py on "
        "BUSI's 780 images (the three class folders; masks left out), one process per figure.",
        "",
        "| run | malloc | model forward (images/s) | old predict | new predict | new, --no-overlays | new / old |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        old, new, bare = (r[k]["images_per_s"] for k in ("old", "new", "new_no_overlays"))
        lines.append(
            f"| {Path(r['run']).name} | {r['variant']} | {r['forward_images_per_s']:.1f} | {old:.2f} | {new:.2f} | "
            f"{bare:.2f} | {new / old:.1f}x ({bare / old:.1f}x without overlays) |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", nargs="+", type=Path, default=[], help="run folders to predict with")
    p.add_argument("--old-code", type=Path, help="another checkout of the project to compare with")
    p.add_argument("--data-dir", type=Path, default=BUSI, help="BUSI folder (default: ../shared BUSI)")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), help="malloc settings")
    add_output_args(p, SECTION)
    args = p.parse_args(argv)
    if render_from_json(args, SECTION, markdown):
        return
    if not args.runs or args.old_code is None:
        p.error("--runs and --old-code are needed to measure")
    doc = measure(args)
    write_json(args.json, doc)
    write_section(args.markdown, SECTION, markdown(doc))
    print(f"Wrote {args.json} and the {SECTION} section of {args.markdown}")


if __name__ == "__main__":
    main()
