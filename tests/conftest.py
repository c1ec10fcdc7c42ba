"""Shared fixtures: small datasets the tests write themselves, and the path of real BUSI."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cli  # noqa: F401  (before TensorFlow: the same oneDNN setting as the scripts, see cli.prefer_onednn)

REPO = Path(__file__).resolve().parents[1]
N_LOGICAL_CPUS = 2


def _split_cpu() -> None:
    """Expose two logical CPU devices so MirroredStrategy code paths run on this machine.

    Must run before TensorFlow initializes its devices, hence at conftest import.
    """
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(N_LOGICAL_CPUS)]
    )


_split_cpu()
BUSI_DIR = REPO.parent / "shared" / "datasets" / "Dataset_BUSI_with_GT"


SHARED_RUNS_GROUP = "trained_runs"


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Send every test using the session's trained runs to one xdist worker, so they are trained once."""
    for item in items:
        if {"trained_runs", "exported"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group(SHARED_RUNS_GROUP))


@pytest.fixture(scope="session")
def busi_dir() -> Path:
    """The real BUSI dataset; missing is a failure in CI and a skip elsewhere."""
    if not BUSI_DIR.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"BUSI dataset not found at {BUSI_DIR} (CI must have ../shared)")
        pytest.skip(f"BUSI dataset not found at {BUSI_DIR}")
    return BUSI_DIR


def textured(seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    """A distinct random-looking uint8 gray image (different seeds are not near-duplicates)."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, size=(h // 8, w // 8)).astype(np.float32)
    img = np.kron(low, np.ones((8, 8), np.float32)) + rng.normal(0, 8, size=(h, w))
    return np.clip(img, 0, 255).astype(np.uint8)


def disc_mask(h: int = 48, w: int = 64, cy: int = 24, cx: int = 32, r: int = 10) -> np.ndarray:
    """A bool disc."""
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def save_gray(path: Path, arr: np.ndarray) -> Path:
    """Write an 8-bit gray PNG (or other format by suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def save_mask(path: Path, mask: np.ndarray) -> Path:
    """Write a 0/255 gray mask."""
    return save_gray(path, mask.astype(np.uint8) * 255)


@pytest.fixture
def make_busi(tmp_path: Path) -> Callable[..., Path]:
    """Factory writing a small, valid BUSI-layout dataset; returns its folder.

    Every class gets ``per_class`` distinct images; lesion classes get a disc mask,
    normal images an empty mask.
    """

    def make(per_class: int = 6, name: str = "busi", seed: int = 0) -> Path:
        root = tmp_path / name
        k = seed * 1000
        for label in ("normal", "benign", "malignant"):
            for n in range(1, per_class + 1):
                k += 1
                img = textured(k)
                save_gray(root / label / f"{label} ({n}).png", img)
                mask = disc_mask() if label != "normal" else np.zeros((48, 64), bool)
                save_mask(root / label / f"{label} ({n})_mask.png", mask)
        return root

    return make


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory) -> dict[str, Path]:
    """One tiny trained run per task (1 epoch on 8 synthetic cases, 32 px): ``{"seg": dir, "cls": dir}``."""
    import train
    from data.synthetic import SynthConfig, generate_synthetic

    root = tmp_path_factory.mktemp("trained")
    data = generate_synthetic(root / "synth", SynthConfig(per_class=8, size=64, seed=1))
    common = dict(epochs=1, max_samples=8, img_size=32, batch_size=4, augment="none", data_dir=str(data))
    return {
        "seg": Path(train.run(task="seg", base_filters=4, project=str(root / "runs"), **common)["run_dir"]),
        "cls": Path(train.run(task="cls", project=str(root / "runs"), **common)["run_dir"]),
    }


@pytest.fixture(scope="session")
def exported(trained_runs, tmp_path_factory) -> dict[str, Path]:
    """Each tiny run exported once by ``export.py``: ``{"seg": version_dir, "cls": version_dir}`` (read only)."""
    import export

    root = tmp_path_factory.mktemp("export")
    return {task: export.run(str(run), out=str(root)).path for task, run in trained_runs.items()}


def odd_images(folder: Path, seed: int = 0) -> list[Path]:
    """Gray and RGB PNG and JPEG, RGBA PNG and 24-bit BMP images of odd sizes, written to ``folder``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    specs = [("L", "png", 97, 131), ("RGB", "png", 151, 77), ("L", "jpg", 123, 211), ("RGB", "jpg", 65, 99),
             ("RGBA", "png", 80, 91), ("RGB", "bmp", 71, 63)]  # fmt: skip
    out = []
    for mode, ext, h, w in specs:
        base = np.kron(rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3)), np.ones((8, 8, 1)))[:h, :w]
        arr = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
        img = Image.fromarray(arr).convert(mode)
        path = folder / f"{mode.lower()}_{h}x{w}.{ext}"
        img.save(path)
        out.append(path)
    return out
