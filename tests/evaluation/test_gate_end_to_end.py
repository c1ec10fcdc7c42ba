"""A planted normal case gets an empty mask through training's evaluation, evaluate.py, predict and the SavedModel.

The model is fixed, not trained, so what it outputs is known: a pixel's probability
rises with its brightness. Lesion images hold a bright square (probability about
0.95) that is their true mask; normal images hold a dimmer square (about 0.6) and an
empty mask, the false lesion an ungated segmenter would report.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

import evaluate
from config.train import TrainConfig
from core.atomic import write_json
from evaluation.base import EvalRequest
from evaluation.seg import evaluate_seg
from inference.backends import RunBackend, SavedModelBackend
from inference.predict import predict_files
from models.postprocess import GATE_FILE
from serving.export import read_export_info, save_run_servable
from tests.conftest import save_gray, save_mask, textured
from training.data import fold_records, prepare_data

SIZE = 64
NORMAL_LEVEL, LESION_LEVEL = 140, 210


def _image(seed: int, level: int | None) -> tuple[np.ndarray, np.ndarray]:
    """A dark textured image with a square of brightness ``level`` (none when None), and the square."""
    rng = np.random.default_rng(seed)
    img = (textured(seed, SIZE, SIZE).astype(np.float32) * 0.2).astype(np.uint8)
    square = np.zeros((SIZE, SIZE), bool)
    if level is not None:
        y, x = rng.integers(4, SIZE - 28, size=2)
        square[y : y + 24, x : x + 24] = True
        img[square] = level
    return img, square


def _write_dataset(root: Path, n: int = 10, offset: int = 0) -> Path:
    for cls in ("normal", "benign", "malignant"):
        for i in range(1, n + 1):
            seed = offset + 1000 * ("normal", "benign", "malignant").index(cls) + i
            img, square = _image(seed, NORMAL_LEVEL if cls == "normal" else LESION_LEVEL)
            save_gray(root / cls / f"{cls} ({i}).png", img)
            save_mask(root / cls / f"{cls} ({i})_mask.png", square & (cls != "normal"))
    return root


def brightness_model(img_size: int) -> keras.Model:
    """Probability sigmoid(10.8 * gray / 255 - 5.52): about 0.01 on the background, 0.6 at 140, 0.95 at 210."""
    inputs = keras.Input((img_size, img_size, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    logits = keras.layers.Conv2D(1, 1, name="head_conv")(x)
    outputs = keras.layers.Activation("sigmoid", dtype="float32", name="mask")(logits)
    model = keras.Model(inputs, outputs, name="brightness")
    model.get_layer("head_conv").set_weights(
        [np.full((1, 1, 3, 1), 10.8 / 3, np.float32), np.array([-5.52], np.float32)]
    )
    return model


@pytest.fixture(scope="module")
def gated_run(tmp_path_factory) -> tuple[Path, Path, dict]:
    """A run folder whose validation fold was scored the way training scores it (gate fitted), and its data."""
    root = tmp_path_factory.mktemp("gate")
    data = _write_dataset(root / "data")
    cfg = TrainConfig(task="seg", data_dir=str(data), img_size=32, project=str(root / "runs"), folds=2)
    prepared = prepare_data(cfg)
    run = root / "runs" / "seg" / "planted"
    write_json(run / "config.json", cfg.to_dict())
    write_json(run / "splits.json", prepared.splits)
    model = brightness_model(32)
    (run / "weights").mkdir()
    model.save(run / "weights" / "best.keras")
    _, val = fold_records(prepared, cfg, 0)
    # what training does after its epochs
    metrics = evaluate_seg(model, cfg, EvalRequest(val, run, fold_dir=run, fit=True))
    return run, data, metrics


def test_training_fits_the_gate_and_reports_empty_answers(gated_run) -> None:
    run, _, metrics = gated_run
    assert (run / GATE_FILE).is_file()
    assert metrics["ungated"]["normal_left_empty"] == 0.0  # every planted normal has a false lesion
    assert metrics["normal_left_empty"] == 1.0 and metrics["lesion_left_empty"] == 0.0
    lo, hi = metrics["normal_left_empty_ci95"]
    assert 0.0 < lo < 1.0 and hi == pytest.approx(1.0)
    assert metrics["lesion_gate"]["scored_with"].startswith("each half of the validation fold")
    assert metrics["per_class"]["normal"]["dice"] == 1.0
    assert metrics["lesion_dice"] > 0.8 and metrics["lesion_dice"] == pytest.approx(metrics["ungated"]["lesion_dice"])
    gate = json.loads((run / GATE_FILE).read_text())["gate"]
    assert 0.6 < gate["min_confidence"] < 0.95 or gate["min_area"] > 0


def test_evaluate_reproduces_the_fold_and_gates_other_data(gated_run, tmp_path) -> None:
    run, _, metrics = gated_run
    again = evaluate.main(evaluate.parse_args(["--run", str(run)]))["fold0"]
    for key in ("dice", "normal_left_empty", "lesion_left_empty", "lesion_dice"):
        assert again[key] == pytest.approx(metrics[key])
    other = _write_dataset(tmp_path / "other_site", n=4, offset=50_000)
    external = evaluate.main(evaluate.parse_args(["--run", str(run), "--data-dir", str(other)]))["fold0"]
    assert external["normal_left_empty"] == 1.0 and external["lesion_left_empty"] == 0.0
    assert external["lesion_gate"]["scored_with"] == "the gate fitted on the run's validation fold"


def _predict(backend, run_tmp: Path, files: list[Path]) -> list[dict]:
    return predict_files(backend, files, run_tmp, progress=False).rows


@pytest.mark.parametrize("where", ["run", "saved_model"])
def test_predict_and_the_saved_model_give_the_planted_normal_an_empty_mask(gated_run, tmp_path, where) -> None:
    run, data, _ = gated_run
    if where == "saved_model":
        cfg = TrainConfig.load(run / "config.json")
        path = save_run_servable(keras.models.load_model(run / "weights" / "best.keras"), cfg, run)
        assert read_export_info(path)["gate"] == json.loads((run / GATE_FILE).read_text())["gate"]
        backend = SavedModelBackend(path)
    else:
        backend = RunBackend(run)
    normal, lesion = data / "normal" / "normal (1).png", data / "benign" / "benign (1).png"
    rows = _predict(backend, tmp_path / "pred", [normal, lesion])
    assert rows[0]["lesion_area_fraction"] == 0.0 and rows[0]["n_components"] == 0
    assert rows[1]["lesion_area_fraction"] > 0.05
    from PIL import Image

    assert not np.asarray(Image.open(rows[0]["mask"])).any()
    raw = backend([normal.read_bytes()])
    assert (raw["mask_probability"] == 0).all() and raw["lesion_area_fraction"][0] == 0.0
