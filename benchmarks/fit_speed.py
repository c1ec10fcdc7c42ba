"""Training images/s of whole models as ``train.py`` builds and compiles them, under both malloc settings.

Each (task, model, size) runs in its own child process per malloc variant, the two variants of a
model back to back: the model from the task's ``build_model`` with ``--weights none`` (an ImageNet
run trains this same graph once its encoder is unfrozen; its frozen first epochs are faster),
compiled with the task's default loss, metrics and Adam as the trainer does, then ``fit`` on
``--images`` random in-memory images at batch 8: one warm-up epoch, then epochs until ``--seconds``
have passed. There is no input pipeline (decoding, augmentation): this is the model's own cost,
which the in-run ``train img/s`` of ``pretrained.py`` mixes with the pipeline's and with whatever
else shared the CPU.

Usage:
    python benchmarks/fit_speed.py
    python benchmarks/fit_speed.py --arms cls:efficientnet_lite0:224 seg:unet:96 --seconds 20
    python benchmarks/fit_speed.py --from-json benchmarks/results/fit_speed.json
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
    VARIANTS,
    add_output_args,
    command_line,
    head_commit,
    render_from_json,
    variant_env,
    write_section,
)
from _common import write_json as save_json
from train_step import cpu_info

SECTION = "fit_speed"
BATCH = 8
ARMS = (
    "cls:efficientnet_lite0:224",
    "cls:efficientnet_b0:224",
    "cls:efficientnet_lite0:128",
    "cls:efficientnet_b0:128",
    "seg:efficientnet_lite0_unet:96",
    "seg:unet:96",
    "joint:efficientnet_lite0_unet:96",
    "joint:unet:96",
)
"""The arms of ``pretrained.py``, as ``task:model:size``."""


def parse_arm(text: str) -> tuple[str, str, int]:
    """``"cls:efficientnet_lite0:224"`` -> ``("cls", "efficientnet_lite0", 224)``.

    Raises:
        ValueError: If ``text`` is not ``task:model:size`` with an integer size.
    """
    parts = text.split(":")
    if len(parts) != 3 or not parts[2].isdigit():
        raise ValueError(f"an arm is task:model:size (e.g. cls:efficientnet_lite0:224). Received: {text!r}")
    return parts[0], parts[1], int(parts[2])


def _targets(task: str, n: int, size: int, rng: np.random.Generator):
    """Random targets in the layout the task's pipeline feeds ``fit`` (one-hot labels, 0/1 masks)."""
    labels = np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]
    yy, xx = np.mgrid[:size, :size]
    c = rng.integers(size // 4, 3 * size // 4, (n, 2))
    masks = ((yy - c[:, :1, None]) ** 2 + (xx - c[:, 1:, None]) ** 2 < (size // 6) ** 2)[..., None].astype(np.float32)
    return {"cls": labels, "seg": masks, "joint": {"mask": masks, "label": labels}}[task]


def worker(arm: str, images: int, seconds: float) -> dict:
    """Time ``fit`` of one arm in this process."""
    import keras
    import tensorflow as tf

    from config.train import TrainConfig
    from core.classes import CLASS_NAMES
    from data.discover import Case
    from training.tasks import task_spec

    task, model_name, size = parse_arm(arm)
    keras.utils.set_random_seed(0)
    cfg = TrainConfig(task=task, model=model_name, img_size=size, weights="none", mixed_precision="off")
    spec = task_spec(task)
    model = spec.build_model(cfg)
    records = [Case(f"c{i}", Path(f"c{i}.png"), CLASS_NAMES[i % 3]) for i in range(30)]
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=spec.loss(cfg, records),
        loss_weights=spec.loss_weights(cfg),
        metrics=spec.metrics(cfg),
    )
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (images, size, size, 3)).astype(np.float32)
    y = _targets(task, images, size, rng)
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    warmup, epochs, t0 = time.perf_counter() - t0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
        epochs += 1
    elapsed = time.perf_counter() - t0
    return {
        "images_per_second": epochs * images / elapsed,
        "warmup_seconds": warmup,
        "timed_seconds": elapsed,
        "parameters": model.count_params(),
        "versions": f"tensorflow {tf.__version__}, keras {keras.__version__}",
    }


def run_arm(arm: str, variant: str, images: int, seconds: float) -> dict:
    """Run :func:`worker` for ``arm`` in a child process under malloc ``variant``."""
    env = {**variant_env(variant), "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = [sys.executable, __file__, "--worker", arm, "--images", str(images), "--seconds", str(seconds)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{arm} ({variant}) failed:\n{proc.stderr[-3000:]}")
    task, model, size = parse_arm(arm)
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"task": task, "model": model, "img_size": size, "variant": variant, **row}


def _ips(row: dict | None) -> str:
    return f"{row['images_per_second']:.1f}" if row else "—"


def markdown(result: dict) -> str:
    """The BENCHMARKS.md section."""
    cpu = result["cpu"]
    lines = [
        "## Training speed of the pretrained benchmark's models, both malloc settings (issue 36)",
        "",
        f"`{result['command']}` on {result['date']}, code {result['commit']}. Machine: {cpu['model']}, "
        f"{cpu['cores']} cores, AVX-512 {'yes' if cpu['avx512'] else 'no'}; {result['rows'][0]['versions']}.",
        "",
        f"`fit` of each model as `train.py` builds and compiles it (`--weights none`, float32, the task's "
        f"default loss and metrics, Adam) on {result['images']} random in-memory images at batch {BATCH}, after "
        "a warm-up epoch; each row in its own process, the two malloc settings of a model back to back. "
        "`default` is glibc as it starts; `no-trim` sets `MALLOC_MMAP_THRESHOLD_=17179869184 "
        "MALLOC_TRIM_THRESHOLD_=17179869184`. No input pipeline: the model's own cost.",
        "",
        "| task | model | px | params (M) | train img/s, default | train img/s, no-trim | warm-up s (default) |",
        "|---|---|---|---|---|---|---|",
    ]
    by = {(r["task"], r["model"], r["img_size"], r["variant"]): r for r in result["rows"]}
    for task, model, size in dict.fromkeys((r["task"], r["model"], r["img_size"]) for r in result["rows"]):
        d, n = by.get((task, model, size, "default")), by.get((task, model, size, "no-trim"))
        first = d or n
        warm = f"{d['warmup_seconds']:.1f}" if d else "—"
        lines.append(
            f"| {task} | {model} | {size} | {first['parameters'] / 1e6:.2f} | {_ips(d)} | {_ips(n)} | {warm} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arms", nargs="+", default=list(ARMS), help="task:model:size to time")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), help="malloc settings")
    p.add_argument("--images", type=int, default=64, help="in-memory images per epoch")
    p.add_argument("--seconds", type=float, default=30.0, help="timed seconds per row after the warm-up")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    add_output_args(p, SECTION)
    p.add_argument("--no-markdown", action="store_true", help="do not touch BENCHMARKS.md")
    args = p.parse_args(argv)
    for arm in [args.worker] if args.worker else args.arms:
        try:
            parse_arm(arm)
        except ValueError as e:
            p.error(str(e))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.images, args.seconds)))
        return 0
    if render_from_json(args, SECTION, markdown):
        return 0
    rows = []
    for arm in args.arms:
        for variant in args.variants:
            print(f"timing {arm} ({variant}) ...", flush=True)
            rows.append(run_arm(arm, variant, args.images, args.seconds))
            print(f"  {rows[-1]['images_per_second']:.1f} img/s", flush=True)
    result = {
        "command": command_line("fit_speed.py", argv),
        "date": time.strftime("%Y-%m-%d"),
        "commit": head_commit(),
        "images": args.images,
        "cpu": cpu_info(),
        "rows": rows,
    }
    save_json(args.json, result)
    if not args.no_markdown:
        write_section(args.markdown, SECTION, markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
