"""CPU latency and throughput of exported SavedModels against in-process Keras, on the same PNG files.

For U-Net (128 px) and EfficientNet-B0 (224 px), both freshly built (latency does
not depend on the weights) and exported with ``serving.export.export_model``:

- SavedModel ``serving_default`` on encoded PNG bytes: decoding, channel
  conversion and resizing inside the graph, then the model;
- Keras in-process, the same work: the pipeline's decode and preprocessing
  functions (``pipeline.decode``), then ``model.predict``;
- model only: ``serving_preprocessed`` on pixels against ``model.predict`` and
  ``model.predict_on_batch`` (less per-call overhead) on the same pixels.

Batch 1 and 8, cycling through real BUSI PNG files. Calls of the compared
paths alternate, so drift of this VM's speed hits both alike. Latency is per
call (p50, p95); throughput is images per second of mean latency. Each malloc
setting runs in its own process.

Usage:
    python benchmarks/serving_latency.py
    python benchmarks/serving_latency.py --iters 10 --no-markdown
    python benchmarks/serving_latency.py --from-json benchmarks/results/serving_latency.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import BUSI, REPO, VARIANTS, add_output_args, render_from_json, variant_env, write_json, write_section

SECTION = "serving_latency"
MODELS = {"unet": ("seg", 128), "efficientnet_b0": ("cls", 224)}
BATCHES = (1, 8)


def _png_files(data_dir: Path, n: int) -> list[Path]:
    files = sorted(p for p in (data_dir / "benign").glob("*.png") if "_mask" not in p.stem)
    if len(files) < n:
        raise FileNotFoundError(f"need {n} benign PNG images in {data_dir / 'benign'}; found {len(files)}")
    return files[:n]


def _stats(seconds: list[float], batch: int) -> dict[str, float]:
    import numpy as np

    ms = np.array(seconds) * 1000
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "img_s": batch * 1000 / float(ms.mean()),
    }


def measure_model(name: str, files: list[Path], iters: int, warmup: int) -> dict:
    """Latency of the three comparisons for one model, batch 1 and 8."""
    import keras
    import numpy as np
    import tensorflow as tf

    from models.registry import build_model
    from pipeline.decode import decode_image_file, preprocess
    from serving.export import export_model
    from serving.signatures import BYTES_SIGNATURE, PIXELS_SIGNATURE, ServingSpec

    task, size = MODELS[name]
    kwargs = {"num_classes": 3, "weights": "none"} if task == "cls" else {}
    model = build_model(name, img_size=size, channels=3, **kwargs)
    spec = ServingSpec(task=task, img_size=size, channels=3)
    with tempfile.TemporaryDirectory() as tmp:
        version_dir = export_model(model, spec, tmp, name).path
        loaded = tf.saved_model.load(str(version_dir))
    by_bytes, by_pixels = loaded.signatures[BYTES_SIGNATURE], loaded.signatures[PIXELS_SIGNATURE]
    encoded = [f.read_bytes() for f in files]

    def keras_pixels(paths):
        return np.stack([preprocess(decode_image_file(tf.constant(str(p))), size, 3, "bilinear") for p in paths])

    all_pixels = keras_pixels(files)
    paths = {
        "savedmodel_bytes": lambda i, b: by_bytes(images=tf.constant(encoded[i : i + b]))[_first(task)].numpy(),
        "keras_decode_predict": lambda i, b: model.predict(keras_pixels(files[i : i + b]), batch_size=b, verbose=0),
        "savedmodel_pixels": lambda i, b: by_pixels(pixels=tf.constant(all_pixels[i : i + b]))[_first(task)].numpy(),
        "keras_predict": lambda i, b: model.predict(all_pixels[i : i + b], batch_size=b, verbose=0),
        "keras_predict_on_batch": lambda i, b: model.predict_on_batch(all_pixels[i : i + b]),
    }
    out: dict = {"task": task, "img_size": size, "params": int(model.count_params())}
    for b in BATCHES:
        starts = [(k * b) % (len(files) - b + 1) for k in range(warmup + iters)]
        times: dict[str, list[float]] = {p: [] for p in paths}
        for k, i in enumerate(starts):
            for p, fn in paths.items():  # alternate the paths call by call
                t0 = time.perf_counter()
                fn(i, b)
                if k >= warmup:
                    times[p].append(time.perf_counter() - t0)
        out[f"batch{b}"] = {p: _stats(t, b) for p, t in times.items()}
        r = out[f"batch{b}"]
        print(
            f"  {name} batch {b}: SavedModel bytes {r['savedmodel_bytes']['p50_ms']:.1f} ms, Keras decode+predict "
            f"{r['keras_decode_predict']['p50_ms']:.1f} ms; pixels {r['savedmodel_pixels']['p50_ms']:.1f} vs "
            f"{r['keras_predict']['p50_ms']:.1f} ms (p50)",
            flush=True,
        )
    keras.backend.clear_session()
    return out


def _first(task: str) -> str:
    return "mask_probability" if task == "seg" else "probabilities"


def markdown(result: dict) -> str:
    """The BENCHMARKS.md section."""
    lines = [
        "## Serving latency (issue: deployment)",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']}. Date: {result['date']}. {result['iters']} timed calls per cell after "
        f"{result['warmup']} warm-up calls, cycling through {result['n_files']} BUSI benign PNG files "
        "(about 500x600 gray); models freshly built and exported with `export_model`.",
        "",
        "Each cell is `default / no-trim`: glibc's default malloc settings, then "
        "`MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184`, each in its own process. "
        "On Keras rows, the ratio is the SavedModel's p50 above it divided by that row's p50 (target: at most 1.1).",
        "",
        "| model | batch | path | p50 ms | p95 ms | images/s | SavedModel / Keras (p50) |",
        "|---|---|---|---|---|---|---|",
    ]
    v = result["variants"]
    groups = [
        ("savedmodel_bytes", ["keras_decode_predict"]),
        ("savedmodel_pixels", ["keras_predict", "keras_predict_on_batch"]),
    ]
    labels = {
        "savedmodel_bytes": "SavedModel `serving_default`, PNG bytes",
        "keras_decode_predict": "Keras: pipeline decode + `model.predict`",
        "savedmodel_pixels": "SavedModel `serving_preprocessed`, pixels",
        "keras_predict": "Keras `model.predict`, pixels",
        "keras_predict_on_batch": "Keras `model.predict_on_batch`, pixels",
    }
    worst = {}
    for name in MODELS:
        size = v[next(iter(VARIANTS))][name]["img_size"]
        for b in BATCHES:
            cell = {n: v[n][name][f"batch{b}"] for n in VARIANTS}
            for served, locals_ in groups:
                for path in (served, *locals_):
                    stats = [
                        " / ".join(f"{cell[n][path][k]:.1f}" for n in VARIANTS) for k in ("p50_ms", "p95_ms", "img_s")
                    ]
                    ratio = ""
                    if path != served:
                        ratios = [cell[n][served]["p50_ms"] / cell[n][path]["p50_ms"] for n in VARIANTS]
                        worst[path] = max(worst.get(path, 0.0), *ratios)
                        ratio = " / ".join(f"{r:.2f}" for r in ratios)
                    lines.append(
                        f"| {name} ({size} px) | {b} | {labels[path]} | " + " | ".join(stats) + f" | {ratio} |"
                    )
    lines += ["", "Largest ratio measured, per Keras reference (target 1.1):", ""]
    lines += [f"- {labels[p]}: {r:.2f}" for p, r in worst.items()]
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, default=BUSI, help="BUSI folder (default: ../shared BUSI)")
    p.add_argument("--iters", type=int, default=40, help="timed calls per model, batch and path")
    p.add_argument("--warmup", type=int, default=5, help="untimed calls first")
    p.add_argument("--n-files", type=int, default=32, help="PNG files to cycle through")
    p.add_argument("--variant", choices=list(VARIANTS), help="measure one malloc setting only (child process)")
    p.add_argument("--no-markdown", action="store_true", help="do not touch BENCHMARKS.md")
    add_output_args(p, SECTION)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if render_from_json(args, SECTION, markdown):
        return 0
    if args.variant:  # child process: one malloc setting
        files = _png_files(args.data_dir, args.n_files)
        result = {name: measure_model(name, files, args.iters, args.warmup) for name in MODELS}
        write_json(args.json, result)
        return 0
    variants = {}
    for name, extra in VARIANTS.items():
        print(f"variant {name}: {extra or 'glibc defaults'}", flush=True)
        tmp = args.json.with_suffix(f".{name}.json")
        cmd = [sys.executable, __file__, "--variant", name, "--data-dir", str(args.data_dir),
               "--iters", str(args.iters), "--warmup", str(args.warmup), "--n-files", str(args.n_files),
               "--json", str(tmp)]  # fmt: skip
        subprocess.run(cmd, env=variant_env(name), check=True, cwd=REPO)
        variants[name] = json.loads(tmp.read_text())
        tmp.unlink()
    defaults = {"iters": 40, "warmup": 5, "n_files": 32}
    extra = [f"--{k.replace('_', '-')} {getattr(args, k)}" for k, d in defaults.items() if getattr(args, k) != d]
    result = {
        "command": " ".join(["python benchmarks/serving_latency.py", *extra]),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        **{k: getattr(args, k) for k in defaults},
        "variants": variants,
    }
    if args.no_markdown:
        print(markdown(result))
        return 0
    write_json(args.json, result)
    write_section(args.markdown, SECTION, markdown(result))
    print(f"Wrote {args.json} and the '{SECTION}' section of {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
