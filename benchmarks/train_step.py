"""Training-step throughput against the CPU's peak: our U-Net under TensorFlow settings, and MONAI's BasicUNet.

Each setting runs in its own process (oneDNN and malloc are read when a library loads):
``keras.Model.fit`` of the default U-Net (128x128x3, batch 8, BCE + Dice, Adam) on 64
random in-memory images, one warm-up epoch, then epochs until ``--seconds`` have passed.
MONAI 1.6 ``BasicUNet`` (DiceCE, Adam, the same images and batch) is timed the same way
with PyTorch's CPU threads set to the core count; it needs PyTorch and MONAI, which the
project does not depend on (see ``monai_basicunet.py``), and is skipped with a note when
they are missing.

FLOPs are counted the same way for both networks: every convolution (and transposed
convolution) is ``2 * k_h * k_w * C_in * C_out`` multiply-adds per output pixel (per input
pixel for the transposed ones), read off the built model's layer shapes; a training step
is taken as three forward passes (the backward pass computes two products per forward one).
Normalization, activations and the optimizer are left out, so the achieved GFLOP/s is a
lower bound. Peak: cores x GHz x 32 FP32 FLOP per cycle (two 256-bit FMA units).

Usage:
    python benchmarks/train_step.py
    python benchmarks/train_step.py --settings default onednn --seconds 20
    /work/.venv-monai/bin/python benchmarks/train_step.py --settings default onednn xla onednn+xla basicunet
    python benchmarks/train_step.py --from-json benchmarks/results/train_step.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _common import REPO, VARIANTS, add_output_args, command_line, head_commit, render_from_json, variant_env
from _common import write_json as save_json

SECTION = "train_step"
IMG, BATCH, N_IMAGES = 128, 8, 64
# name -> (environment, jit_compile, (intra-op, inter-op) threads or None for TensorFlow's choice);
# TF_ENABLE_ONEDNN_OPTS is set explicitly either way.
SETTINGS = {
    "default": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, False, None),
    "onednn": ({"TF_ENABLE_ONEDNN_OPTS": "1"}, False, None),
    "xla": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, True, None),
    "onednn+xla": ({"TF_ENABLE_ONEDNN_OPTS": "1"}, True, None),
    "onednn+inter1": ({"TF_ENABLE_ONEDNN_OPTS": "1"}, False, (2, 1)),
    "onednn+intra1": ({"TF_ENABLE_ONEDNN_OPTS": "1"}, False, (1, 2)),
    "basicunet": ({}, False, None),
}
PEAK_FLOP_PER_CYCLE = 32  # FP32, two 256-bit FMA units: 2 units x 8 lanes x 2 FLOP


def cpu_info() -> dict:
    """CPU model, cores, clock and AVX-512 presence, from /proc/cpuinfo."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "unknown")
    mhz = [float(ln.split(":", 1)[1]) for ln in text.splitlines() if ln.startswith("cpu MHz")]
    ghz = round(float(np.median(mhz)) / 1000, 2) if mhz else 0.0
    return {
        "model": model,
        "cores": os.cpu_count(),
        "ghz": ghz,
        "avx512": "avx512f" in text,
        "peak_gflops": (os.cpu_count() or 1) * ghz * PEAK_FLOP_PER_CYCLE,
        "python": platform.python_version(),
    }


def conv_flops_keras(model) -> float:
    """Forward FLOPs of one image: 2 x multiply-adds of every Conv2D / Conv2DTranspose."""
    import keras

    total = 0.0
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.Conv2DTranspose):
            _, h, w, cin = layer.input.shape
            kh, kw = layer.kernel_size
            total += 2.0 * h * w * kh * kw * cin * layer.filters
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, cout = layer.output.shape
            kh, kw = layer.kernel_size
            total += 2.0 * h * w * kh * kw * layer.input.shape[-1] * cout / layer.groups
    return total


def conv_flops_torch(net, x) -> float:
    """The same count for a PyTorch network, from forward hooks on its convolutions."""
    import torch

    total = [0.0]

    def hook(mod, inp, out):
        kh, kw = mod.kernel_size
        if isinstance(mod, torch.nn.ConvTranspose2d):
            _, cin, h, w = inp[0].shape
            total[0] += 2.0 * h * w * kh * kw * cin * mod.out_channels / mod.groups
        else:
            _, cout, h, w = out.shape
            total[0] += 2.0 * h * w * kh * kw * mod.in_channels * cout / mod.groups

    handles = [
        m.register_forward_hook(hook)
        for m in net.modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)
    ]
    with torch.no_grad():
        net(x[:1])
    for h in handles:
        h.remove()
    return total[0]


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (N_IMAGES, IMG, IMG, 3)).astype(np.float32)
    yy, xx = np.mgrid[:IMG, :IMG]
    y = np.stack([((yy - rng.integers(30, 98)) ** 2 + (xx - rng.integers(30, 98)) ** 2 < 400) for _ in range(N_IMAGES)])
    return x, y[..., None].astype(np.float32)


def _time_epochs(warmup: Callable[[], object], epoch: Callable[[], object], seconds: float) -> dict:
    """Run ``warmup`` once, then ``epoch`` (``N_IMAGES`` images) until ``seconds`` have passed."""
    t0 = time.perf_counter()
    warmup()
    warmup_seconds = time.perf_counter() - t0
    epochs, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        epoch()
        epochs += 1
    elapsed = time.perf_counter() - t0
    ips = epochs * N_IMAGES / elapsed
    return {"images_per_second": ips, "warmup_seconds": warmup_seconds, "timed_seconds": elapsed}


def time_keras(jit: bool, seconds: float) -> dict:
    """Images/s of ``fit`` on the default U-Net, after a warm-up epoch."""
    import keras

    from losses.segmentation import get_seg_loss
    from models.registry import build_model

    keras.utils.set_random_seed(0)
    model = build_model("unet", img_size=IMG, channels=3, base_filters=16, depth=4, dropout=0.1, norm="instance")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=get_seg_loss("bce_dice"), jit_compile=jit)
    x, y = _data()
    return {
        **_time_epochs(
            lambda: model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0),
            lambda: model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False),
            seconds,
        ),
        "forward_flops": conv_flops_keras(model),
        "parameters": model.count_params(),
    }


def time_basicunet(seconds: float) -> dict:
    """Images/s of a BasicUNet training loop (DiceCE, Adam) on the same images."""
    import monai
    import torch
    from monai.losses import DiceCELoss
    from monai.networks.nets import BasicUNet

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    x, y = _data()
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous() / 255.0
    yt = torch.from_numpy(y).permute(0, 3, 1, 2).contiguous()
    net = BasicUNet(spatial_dims=2, in_channels=3, out_channels=1)
    loss_fn, opt = DiceCELoss(sigmoid=True), torch.optim.Adam(net.parameters(), lr=1e-3)

    def epoch() -> None:
        net.train()
        for i in range(0, N_IMAGES, BATCH):
            opt.zero_grad()
            loss_fn(net(xt[i : i + BATCH]), yt[i : i + BATCH]).backward()
            opt.step()

    return {
        **_time_epochs(epoch, epoch, seconds),
        "forward_flops": conv_flops_torch(net, xt),
        "parameters": sum(p.numel() for p in net.parameters()),
        "versions": f"torch {torch.__version__}, monai {monai.__version__}",
    }


def worker(setting: str, seconds: float) -> dict:
    """Time one setting in this process."""
    if setting == "basicunet":
        return time_basicunet(seconds)
    import tensorflow as tf

    _, jit, threads = SETTINGS[setting]
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads[0])
        tf.config.threading.set_inter_op_parallelism_threads(threads[1])
    out = time_keras(jit, seconds)
    out["versions"] = f"tensorflow {tf.__version__}"
    return out


def run_setting(setting: str, variant: str, seconds: float) -> dict:
    """Run :func:`worker` for ``setting`` in a child process under malloc ``variant``."""
    env = {**variant_env(variant), **SETTINGS[setting][0], "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = [sys.executable, __file__, "--worker", setting, "--seconds", str(seconds)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        if setting == "basicunet" and "No module named" in proc.stderr:
            return {"setting": setting, "variant": variant, "skipped": "PyTorch or MONAI not installed"}
        raise RuntimeError(f"{setting} ({variant}) failed:\n{proc.stderr[-3000:]}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row["train_gflops_per_second"] = row["images_per_second"] * 3 * row["forward_flops"] / 1e9
    return {"setting": setting, "variant": variant, **row}


def merge_rows(path: Path, result: dict) -> dict:
    """Keep the rows of earlier invocations, but those of the same command (measured again here).

    Settings measured again by another command keep both rows: run-to-run spread on these machines
    is large, and comparisons hold within one invocation.
    """
    if not path.exists():
        return result
    commands = {r["command"] for r in result["rows"]}
    old = [r for r in json.loads(path.read_text())["rows"] if r.get("command") not in commands]
    return {**result, "rows": old + result["rows"]}


def markdown(result: dict) -> str:
    """The BENCHMARKS.md section."""
    cpu = result["cpu"]
    commands = list(dict.fromkeys(r.get("command", result["command"]) for r in result["rows"]))
    lines = [
        "## Training step against the CPU's peak (issue 20)",
        "",
        *[f"Run {i}: `{c}`  " for i, c in enumerate(commands, 1)],
        f"Machine: {cpu['model']}, {cpu['cores']} cores at {cpu['ghz']} GHz, AVX-512 "
        f"{'yes' if cpu['avx512'] else 'no'}; FP32 peak {cpu['peak_gflops']:.0f} GFLOP/s "
        f"({cpu['cores']} x {cpu['ghz']} GHz x {PEAK_FLOP_PER_CYCLE}; the clock is /proc/cpuinfo's). "
        f"Dates: {', '.join(sorted({r.get('date', result['date']) for r in result['rows']}))}. "
        f"Code: {', '.join(dict.fromkeys(r.get('commit', result['commit']) for r in result['rows']))}.",
        "",
        f"`fit` of the default U-Net (128x128x3, base 16, depth 4, instance norm, BCE + Dice, Adam) and of MONAI's "
        f"`BasicUNet` (DiceCE, Adam) on {N_IMAGES} in-memory images, batch {BATCH}, after a warm-up epoch; each row "
        "in its own process. FLOPs: convolutions only, a training step as three forward passes. `malloc` "
        "`no-trim` is `MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184`.",
        "",
        "| run | network | setting | malloc | forward GFLOP/image | train img/s | achieved GFLOP/s | % of peak | "
        "warm-up s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        net = "BasicUNet" if r["setting"] == "basicunet" else "U-Net"
        run = commands.index(r.get("command", result["command"])) + 1
        if "skipped" in r:
            lines.append(f"| {run} | {net} | {r['setting']} | {r['variant']} | - | skipped: {r['skipped']} | | | |")
            continue
        lines.append(
            f"| {run} | {net} | {r['setting']} | {r['variant']} | {r['forward_flops'] / 1e9:.2f} | "
            f"{r['images_per_second']:.1f} | {r['train_gflops_per_second']:.1f} | "
            f"{100 * r['train_gflops_per_second'] / cpu['peak_gflops']:.0f}% | {r['warmup_seconds']:.1f} |"
        )
    versions = sorted({r["versions"] for r in result["rows"] if "versions" in r})
    lines += ["", "Settings: `default` is TensorFlow as it starts here (`TF_ENABLE_ONEDNN_OPTS=0`, no XLA on a CPU); "
              "`onednn` sets `TF_ENABLE_ONEDNN_OPTS=1`; `xla` compiles the step with `jit_compile=True`; "
              "`inter1` / `intra1` set TensorFlow's inter-op / intra-op thread pool to 1 thread (the other to 2). "
              f"Versions: {'; '.join(versions)}."]  # fmt: skip
    if result.get("note"):
        lines += ["", result["note"]]
    return "\n".join(lines) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS), help="what to time")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), help="malloc settings")
    p.add_argument("--seconds", type=float, default=30.0, help="timed seconds per setting after the warm-up")
    p.add_argument("--worker", choices=list(SETTINGS), help=argparse.SUPPRESS)
    add_output_args(p, SECTION)
    p.add_argument("--no-markdown", action="store_true", help="do not touch BENCHMARKS.md")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.seconds)))
        return 0
    from _common import write_section

    if render_from_json(args, SECTION, markdown):
        return 0
    rows = []
    for variant in args.variants:
        for setting in args.settings:
            print(f"timing {setting} ({variant}) ...", flush=True)
            rows.append(run_setting(setting, variant, args.seconds))
            r = rows[-1]
            print(f"  {r.get('images_per_second', float('nan')):.1f} img/s {r.get('skipped', '')}", flush=True)
    stamp = {"command": command_line("train_step.py", argv), "date": time.strftime("%Y-%m-%d"), "commit": head_commit()}
    result = {**stamp, "cpu": cpu_info(), "rows": [{**r, **stamp} for r in rows]}
    if args.json.exists():
        result = {**json.loads(args.json.read_text()), **merge_rows(args.json, result)}
    save_json(args.json, result)
    if not args.no_markdown:
        write_section(args.markdown, SECTION, markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
