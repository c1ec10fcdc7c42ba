"""A fault corpus: each fault gives its exact message, and nothing the run had is lost."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import train
from core.errors import DataError, StorageError
from data.synthetic import SynthConfig, generate_synthetic
from tests.conftest import save_mask

pytestmark = pytest.mark.slow

TINY = dict(img_size=32, base_filters=4, batch_size=4, augment="none", max_samples=8, export=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("faults") / "synth", SynthConfig(per_class=8, size=64, seed=1))


def _copy(data: Path, tmp_path: Path) -> Path:
    out = tmp_path / "data"
    shutil.copytree(data, out)
    return out


def test_a_mask_of_another_size_among_the_training_data(data, tmp_path) -> None:
    copy = _copy(data, tmp_path)
    mask = save_mask(copy / "benign" / "benign (5)_mask.png", np.ones((10, 12), bool))
    from PIL import Image

    with Image.open(copy / "benign" / "benign (5).png") as im:
        width, height = im.size
    with pytest.raises(DataError) as err:
        train.run(epochs=1, data_dir=str(copy), project=str(tmp_path / "runs"), **TINY)
    assert str(err.value) == (
        f"1 problem in the dataset:\n  {mask}: mask is 12x10 (WxH) but its image benign (5).png is {width}x{height}"
    )
    assert not (tmp_path / "runs" / "seg").exists()


def test_a_file_that_disappears_between_inspection_and_training(data, tmp_path, monkeypatch) -> None:
    import training.trainer as trainer

    copy = _copy(data, tmp_path)
    gone = copy / "malignant" / "malignant (2).png"
    prepare = trainer.prepare_data

    def prepare_then_delete(*args, **kwargs):
        prepared = prepare(*args, **kwargs)
        gone.unlink()  # after the dataset was inspected and split
        return prepared

    monkeypatch.setattr(trainer, "prepare_data", prepare_then_delete)
    with pytest.raises(DataError) as err:
        train.run(epochs=1, data_dir=str(copy), project=str(tmp_path / "runs"), **{**TINY, "max_samples": 0})
    assert str(err.value) == (
        f"1 problem in the dataset:\n  {gone}: gone since the dataset was inspected; restore it or inspect again"
    )
    run_dir = tmp_path / "runs" / "seg" / "exp"
    assert json.loads((run_dir / "config.json").read_text())["epochs"] == 1 and not (run_dir / "weights").exists()


def test_a_run_folder_that_cannot_be_written(data, tmp_path) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the project folder should be")
    with pytest.raises(StorageError) as err:
        train.run(epochs=1, data_dir=str(data), project=str(blocker), **TINY)
    run_dir = blocker / "seg" / "exp"
    assert str(err.value) == f"cannot write in {run_dir} ({blocker} is a file, not a folder): pass another --project"
    assert blocker.read_text() == "a file where the project folder should be"


def test_a_full_disk_while_writing_a_checkpoint_keeps_the_last_epoch(data, tmp_path, monkeypatch) -> None:
    import training.checkpoint as checkpoint

    save = checkpoint.save_model_atomic
    calls = []

    def full_on_epoch_2(model, path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        save(model, path)

    monkeypatch.setattr(checkpoint, "save_model_atomic", full_on_epoch_2)
    project = tmp_path / "runs"
    with pytest.raises(StorageError) as err:
        train.run(epochs=3, data_dir=str(data), project=str(project), **TINY)
    run_dir = project / "seg" / "exp"
    assert str(err.value) == (
        f"could not write epoch 2's checkpoint in {run_dir} (No space left on device); the run is intact after "
        f"epoch 1: make room, then train.py --resume {run_dir}"
    )
    assert json.loads((run_dir / "state.json").read_text())["epoch"] == 1
    monkeypatch.setattr(checkpoint, "save_model_atomic", save)
    result = train.run(resume=str(run_dir))
    assert result["epochs_completed"] == 3 and json.loads((run_dir / "state.json").read_text())["epoch"] == 3


def test_an_export_interrupted_half_way_leaves_no_version(tmp_path, monkeypatch, trained_runs) -> None:
    import export
    import serving.export as serving_export
    from serving.layout import versions

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # killed while writing the warmup records

    monkeypatch.setattr(serving_export, "write_warmup", interrupted)
    out = tmp_path / "export"
    with pytest.raises(KeyboardInterrupt):
        export.run(str(trained_runs["seg"]), out=str(out))
    model_dir = out / "unet"
    assert not model_dir.exists() or (versions(model_dir) == [] and list(model_dir.iterdir()) == [])
