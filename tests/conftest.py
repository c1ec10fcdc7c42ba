"""Shared fixtures: small datasets the tests write themselves, and the path of real BUSI."""

from __future__ import annotations

import contextlib
import dataclasses
import io
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
# The xdist group of each session fixture that trains: its users share one worker, so it is trained once.
# The classifier run shares the keras-hub group with tests/training/test_hub_runs.py's SegFormer run.
RUN_GROUPS = {
    "trained_runs": SHARED_RUNS_GROUP,
    "exported": SHARED_RUNS_GROUP,
    "lesion_run": "lesion_run",  # tests/training/test_lesion_crop.py's lesion classifier, trained once
    "classifier_run": "hub_runs",
}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Send every test using one of the session's trained runs to that run's xdist worker, so it is trained once."""
    for item in items:
        groups = {RUN_GROUPS[f] for f in getattr(item, "fixturenames", ()) if f in RUN_GROUPS}
        if len(groups) > 1:
            raise pytest.UsageError(f"{item.nodeid} uses trained runs of different xdist groups: {sorted(groups)}")
        for group in groups:
            item.add_marker(pytest.mark.xdist_group(group))


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
    """One tiny trained run per task (1 epoch on 8 synthetic cases, 32 px): ``{"seg": dir, "cls": dir}``; the
    classifier is the default, EfficientNet-Lite0 from ImageNet (its encoder frozen through the one epoch).

    The segmenter exports its SavedModel at the end of training; the classifier does not (the
    ``exported`` fixture exports it with export.py, and ``classifier_run`` covers a classifier's
    export at the end of training).
    """
    import train
    from data.synthetic import SynthConfig, generate_synthetic

    root = tmp_path_factory.mktemp("trained")
    data = generate_synthetic(root / "synth", SynthConfig(per_class=8, size=64, seed=1))
    common = dict(epochs=1, max_samples=8, img_size=32, batch_size=4, augment="none", data_dir=str(data))
    return {
        "seg": Path(train.run(task="seg", base_filters=4, project=str(root / "runs"), **common)["run_dir"]),
        "cls": Path(train.run(task="cls", project=str(root / "runs"), export=False, **common)["run_dir"]),
    }


@pytest.fixture(scope="session")
def exported(trained_runs, tmp_path_factory) -> dict[str, Path]:
    """Each tiny run exported once by ``export.py``: ``{"seg": version_dir, "cls": version_dir}`` (read only)."""
    import export

    root = tmp_path_factory.mktemp("export")
    return {task: export.run(str(run), out=str(root)).path for task, run in trained_runs.items()}


def lesion_manifest(src: Path, dst: Path, device: bool = True) -> Path:
    """A manifest site from a synthetic dataset's benign and malignant cases: two images per patient, scanners."""
    rows = ["image,label,mask,group,device"]
    images = sorted(p for p in src.glob("*/*.png") if "_mask" not in p.name and p.parent.name != "normal")
    for k, img in enumerate(images):
        mask = img.with_name(img.stem + "_mask.png")
        scanner = ("GE Logiq 7", "Toshiba")[k % 2] if device else ""
        rows.append(f"{img},{img.parent.name},{mask},patient{k // 2},{scanner}")
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "manifest.csv").write_text("\n".join(rows) + "\n")
    return dst / "manifest.csv"


@dataclasses.dataclass
class ClassifierRun:
    """A finished classification run, what it printed, the ``fit`` calls it made and what it was given."""

    result: dict
    stdout: str
    fits: list[tuple[int, int | None, int]]  # (dataset cardinality, steps_per_epoch, initial_epoch)
    data: Path
    preset: Path

    @property
    def run_dir(self) -> Path:
        return Path(self.result["run_dir"])


@pytest.fixture(scope="session")
def classifier_run(tmp_path_factory) -> ClassifierRun:
    """One DeiT-Tiny classification run (two of its blocks) through ``train.run``, shared by the classifier tests.

    It starts from a keras-hub preset directory written here (``save_to_preset`` at 64 px, so
    the 32-px run resizes the position embeddings), so it trains in the two phases a preset
    triggers: the backbone frozen for epoch 1, then every layer at a tenth of the rate for
    epoch 2. MirroredStrategy with two replicas (the two logical CPUs above), validated on an
    external site (a manifest with patients and scanners, 8 images of 4 patients), exported.
    Each ``keras.Model.fit`` call is recorded. The default classifier, EfficientNet-Lite0 from
    ImageNet, runs in ``trained_runs``.
    """
    import keras

    import train
    from data.synthetic import SynthConfig, generate_synthetic
    from models.deit_tiny import DEIT_TINY
    from models.hub import keras_hub

    root = tmp_path_factory.mktemp("classifier")
    data = generate_synthetic(root / "synth", SynthConfig(per_class=8, size=64, seed=1))
    site = generate_synthetic(root / "site", SynthConfig(per_class=4, size=64, seed=3))
    preset = root / "deit_preset"
    deit = DEIT_TINY | {"num_layers": 2}  # two of DeiT-Tiny's 12 blocks: the same code paths, a sixth of the tracing
    keras_hub().models.DeiTBackbone(image_shape=(64, 64, 3), patch_size=16, **deit).save_to_preset(str(preset))
    fits = []
    fit = keras.Model.fit

    def spy(self, x, *args, **kwargs):
        fits.append((int(x.cardinality()), kwargs.get("steps_per_epoch"), kwargs["initial_epoch"]))
        return fit(self, x, *args, **kwargs)

    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setattr(keras.Model, "fit", spy)
        res = train.run(
            task="cls",
            model="deit_tiny",
            weights=str(preset),
            num_layers=2,
            epochs=2,
            freeze_epochs=1,
            schedule="constant",
            max_samples=8,
            img_size=32,
            batch_size=4,
            augment="none",
            data_dir=str(data),
            external=[str(lesion_manifest(site, root / "bra"))],
            project=str(root / "runs"),
        )
    return ClassifierRun(res, out.getvalue(), fits, data, preset)


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
