"""An independent check of the EfficientNet-Lite0 conversion: the PyTorch forward pass, written from torch's ops.

Not part of the project (it needs torch, which the project never does): run it in a
separate environment to reproduce the reference probabilities that
``tests/models/test_lite_weights.py`` holds the Keras network to. It reads the same
``.pth`` with ``torch.load``, runs Lite0 with TensorFlow's SAME padding, batch norm
epsilon 1e-3, ReLU6 and input ``(x - 127) / 128``, on scikit-image's cat and coffee
photographs resized to 224 px by TensorFlow in the project's environment (``--export``
writes those inputs and the Keras probabilities), and prints each photograph's top-5
classes and the largest difference from the Keras network.

Usage:
    python benchmarks/lite0_torch_reference.py --export /tmp/lite0   # in the project's environment
    python -m venv /tmp/tv && /tmp/tv/bin/pip install torch==2.13.0 numpy
    /tmp/tv/bin/python benchmarks/lite0_torch_reference.py --compare /tmp/lite0
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

PHOTOS = ("chelsea", "coffee")
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112), (4, 5, 2, 6, 192))
STAGES += ((1, 3, 1, 6, 320),)


def export(out: Path) -> None:
    """Write the resized photographs, the Keras probabilities and the .pth's path (project environment)."""
    import skimage.data
    import tensorflow as tf

    from models.lite_weights import imagenet_lite0, source_path

    out.mkdir(parents=True, exist_ok=True)
    network = imagenet_lite0(224, include_top=True)
    for name in PHOTOS:
        x = tf.image.resize(getattr(skimage.data, name)()[None].astype("float32"), (224, 224), antialias=True).numpy()
        np.save(out / f"{name}_input.npy", x[0])
        np.save(out / f"{name}_keras.npy", network.predict(x, verbose=0)[0])
    (out / "source.txt").write_text(str(source_path()))


def compare(out: Path) -> None:
    """Run the PyTorch forward pass on the exported inputs and print it beside the Keras probabilities."""
    import torch
    import torch.nn.functional as F

    sd = torch.load((out / "source.txt").read_text(), map_location="cpu", weights_only=True)

    def conv(x, w, stride=1, groups=1):
        k, (h, wd) = w.shape[-1], x.shape[-2:]
        ph = max((math.ceil(h / stride) - 1) * stride + k - h, 0)
        pw = max((math.ceil(wd / stride) - 1) * stride + k - wd, 0)
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])  # TensorFlow's SAME
        return F.conv2d(x, w, stride=stride, groups=groups)

    def bn(x, p):
        return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
                            False, 0.0, 1e-3)  # fmt: skip

    def forward(img):
        x = (torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)[None])).float() - 127.0) / 128.0
        x = F.relu6(bn(conv(x, sd["_conv_stem.weight"], 2), "_bn0"))
        i, cin = 0, 32
        for repeats, _k, stride, expand, cout in STAGES:
            for j in range(repeats):
                p, inp, s = f"_blocks.{i}.", x, stride if j == 0 else 1
                if expand != 1:
                    x = F.relu6(bn(conv(x, sd[p + "_expand_conv.weight"]), p + "_bn0"))
                x = F.relu6(bn(conv(x, sd[p + "_depthwise_conv.weight"], s, x.shape[1]), p + "_bn1"))
                x = bn(conv(x, sd[p + "_project_conv.weight"]), p + "_bn2")
                x = x + inp if s == 1 and cin == cout else x
                cin, i = cout, i + 1
        x = F.relu6(bn(conv(x, sd["_conv_head.weight"]), "_bn1")).mean((2, 3))
        return torch.softmax(F.linear(x, sd["_fc.weight"], sd["_fc.bias"]), 1)[0].numpy()

    with torch.no_grad():
        for name in PHOTOS:
            p, k = forward(np.load(out / f"{name}_input.npy")), np.load(out / f"{name}_keras.npy")
            top = np.argsort(p)[::-1][:5]
            print(name, "torch top-5", [(int(c), round(float(p[c]), 6)) for c in top],
                  f"max |keras - torch| {np.abs(p - k).max():.2e}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--export", type=Path, help="folder to write the inputs and Keras probabilities to")
    group.add_argument("--compare", type=Path, help="folder --export wrote; run where torch is installed")
    args = parser.parse_args()
    export(args.export) if args.export else compare(args.compare)
