"""export.py: TF Serving layout, signatures, parity with the Keras model, warmup, versions."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import export
from config.train import TrainConfig
from core.classes import CLASS_NAMES
from data.discover import Case
from evaluation.run_files import load_inference_model
from models.postprocess import load_gate, postprocess_np
from pipeline.config import PipelineConfig
from pipeline.dataset import build_dataset
from serving.export import read_export_info, resolve_version_dir, write_servable
from serving.layout import MODELS_CONFIG
from serving.signatures import BYTES_SIGNATURE, PIXELS_SIGNATURE, ServingSpec
from serving.warmup import WARMUP_BATCHES, WARMUP_FILE, read_warmup
from tests.conftest import odd_images

pytestmark = pytest.mark.slow


def _pipeline_pixels(files: list[Path], cfg: TrainConfig) -> np.ndarray:
    """What evaluation feeds the model: the tf.data pipeline on these files."""
    records = [Case(f"c{i}", f, "benign") for i, f in enumerate(files)]
    pcfg = PipelineConfig(img_size=cfg.img_size, channels=cfg.channels, augment="none", batch_size=4)
    return np.concatenate([x.numpy() for x, _ in build_dataset(records, "cls", pcfg, training=False)])


@pytest.mark.parametrize("task", ["seg", "cls"])
def test_signature_on_encoded_images_matches_keras_on_pipeline_tensors(task, trained_runs, exported, tmp_path):
    run = trained_runs[task]
    cfg = TrainConfig.load(run / "config.json")
    files = odd_images(tmp_path / "imgs")  # gray/RGB PNG and JPEG, RGBA PNG, BMP; odd sizes
    pixels = _pipeline_pixels(files, cfg)
    model = load_inference_model(run / "weights" / "best.keras")
    expected = keras.ops.convert_to_numpy(model(pixels, training=False))

    loaded = tf.saved_model.load(str(exported[task]))
    out = loaded.signatures[BYTES_SIGNATURE](images=tf.constant([f.read_bytes() for f in files]))
    pre = loaded.signatures[PIXELS_SIGNATURE](pixels=tf.constant(pixels))
    if task == "cls":
        from evaluation.run_files import load_fitted_temperature
        from metrics.calibration import apply_temperature

        expected = apply_temperature(expected, load_fitted_temperature(run).temperature)  # the served calibration
        got = out["probabilities"].numpy()
        np.testing.assert_array_equal(out["class_id"].numpy(), expected.argmax(-1))
        assert [s.decode() for s in out["class_name"].numpy()] == [CLASS_NAMES[k] for k in expected.argmax(-1)]
        np.testing.assert_allclose(pre["probabilities"].numpy(), expected, rtol=0, atol=1e-5)
    else:
        expected = load_gate(run).apply_np(expected)  # the run's lesion gate is part of the served graph
        got = out["mask_probability"].numpy()[..., None]
        sizes = [tuple(int(v) for v in re.search(r"(\d+)x(\d+)", f.name).groups()) for f in files]
        assert list(zip(out["original_height"].numpy(), out["original_width"].numpy(), strict=True)) == sizes
        np.testing.assert_allclose(
            out["lesion_area_fraction"].numpy(), (expected >= 0.5).mean(axis=(1, 2, 3)), rtol=0, atol=1e-6
        )
        np.testing.assert_allclose(pre["mask_probability"].numpy()[..., None], expected, rtol=0, atol=1e-5)
    assert got.dtype == np.float32
    assert np.abs(got - expected).max() <= 1e-5


def _cli_show(version_dir: Path) -> str:
    cmd = [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show", "--all", "--dir", str(version_dir)]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def _signature_io(text: str, signature: str) -> dict[str, tuple[str, str]]:
    """``{"inputs/images": ("DT_STRING", "(-1)"), ...}`` of one signature in saved_model_cli's output."""
    block = text.split(f"signature_def['{signature}']:")[1].split("signature_def[")[0]
    found = {}
    for kind, name, dtype, shape in re.findall(
        r"(inputs|outputs)\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+shape: (\([^)]*\))", block
    ):
        found[f"{kind}/{name}"] = (dtype, shape)
    return found


def test_saved_model_cli_lists_both_signatures_with_dtypes_and_shapes(exported):
    seg = _cli_show(exported["seg"])
    assert _signature_io(seg, BYTES_SIGNATURE) == {
        "inputs/images": ("DT_STRING", "(-1)"),
        "outputs/mask_probability": ("DT_FLOAT", "(-1, 32, 32)"),
        "outputs/lesion_area_fraction": ("DT_FLOAT", "(-1)"),
        "outputs/original_height": ("DT_INT32", "(-1)"),
        "outputs/original_width": ("DT_INT32", "(-1)"),
    }
    assert _signature_io(seg, PIXELS_SIGNATURE) == {
        "inputs/pixels": ("DT_FLOAT", "(-1, 32, 32, 3)"),
        "outputs/mask_probability": ("DT_FLOAT", "(-1, 32, 32)"),
        "outputs/lesion_area_fraction": ("DT_FLOAT", "(-1)"),
    }
    cls = _cli_show(exported["cls"])
    assert read_export_info(exported["cls"])["malignancy_cut"] is not None  # the tiny run has a cut: served too
    assert _signature_io(cls, BYTES_SIGNATURE) == {
        "inputs/images": ("DT_STRING", "(-1)"),
        "outputs/probabilities": ("DT_FLOAT", "(-1, 3)"),
        "outputs/class_id": ("DT_INT64", "(-1)"),
        "outputs/class_name": ("DT_STRING", "(-1)"),
        "outputs/malignancy_cut": ("DT_FLOAT", "(-1)"),
        "outputs/malignant_at_cut": ("DT_BOOL", "(-1)"),
    }
    assert _signature_io(cls, PIXELS_SIGNATURE)["inputs/pixels"] == ("DT_FLOAT", "(-1, 32, 32, 3)")
    assert "tensorflow/serving/predict" in cls


def test_layout_and_warmup_records_parse_and_replay(exported):
    version_dir = exported["seg"]
    assert version_dir.name == "1" and (version_dir / "saved_model.pb").is_file()
    assert (version_dir / "variables" / "variables.index").is_file()
    logs = read_warmup(version_dir / "assets.extra" / WARMUP_FILE)
    assert len(logs) == len(WARMUP_BATCHES)
    loaded = tf.saved_model.load(str(version_dir))
    for log, n in zip(logs, WARMUP_BATCHES, strict=True):
        request = log.predict_log.request
        assert request.model_spec.name == version_dir.parent.name
        assert request.model_spec.signature_name == BYTES_SIGNATURE
        images = tf.make_ndarray(request.inputs["images"])
        assert images.shape == (n,) and images.dtype == object
        out = loaded.signatures[BYTES_SIGNATURE](images=tf.constant(images))  # what Serving replays on load
        assert out["mask_probability"].shape == (n, 32, 32)
    info = read_export_info(version_dir)
    assert info["task"] == "seg" and info["img_size"] == 32 and info["version"] == 1


def _tree_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + p.read_bytes())
    return h.hexdigest()


def test_versions_increment_and_an_existing_version_is_never_overwritten(trained_runs, tmp_path):
    run = trained_runs["seg"]  # the smaller model: versioning is the same for both tasks
    weights = run / "weights" / "best.keras"
    before = hashlib.sha256(weights.read_bytes()).hexdigest()
    first = export.run(str(run), out=str(tmp_path), name="busi_seg")
    second = export.run(str(run), out=str(tmp_path), name="busi_seg")
    assert (first.version, second.version) == (1, 2)
    digest = _tree_digest(first.path)
    with pytest.raises(FileExistsError, match="never overwritten"):
        export.run(str(run), out=str(tmp_path), name="busi_seg", version=1)
    assert _tree_digest(first.path) == digest
    assert sorted(p.name for p in (tmp_path / "busi_seg").iterdir()) == ["1", "2"]  # no temporary left behind
    assert resolve_version_dir(tmp_path / "busi_seg") == second.path
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == before  # the run's model is untouched
    export.run(str(trained_runs["seg"]), out=str(tmp_path), version=7)
    config = (tmp_path / MODELS_CONFIG).read_text()
    assert re.findall(r'name: "([^"]+)"', config) == ["busi_seg", "unet"]
    assert 'base_path: "/models/unet"' in config and config.count("config {") == 2


def test_export_errors_name_the_problem(trained_runs, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        export.run(str(tmp_path), out=str(tmp_path / "e"))
    with pytest.raises(ValueError, match="`name` must be"):
        export.run(str(trained_runs["seg"]), out=str(tmp_path / "e"), name="bad name/..")


def test_postprocess_largest_is_in_the_served_graph_and_in_export_json(trained_runs, tmp_path):
    """A toy segmenter whose map is its input / 255: the served map is the NumPy post-processing of it."""
    planted = np.zeros((2, 20, 20), np.float32)
    planted[:, 4:15, 4:15] = 0.9
    planted[:, 7:11, 7:11] = 0.1  # a hole
    planted[:, 1, 1] = 0.8  # a speck
    planted[1, 17:20, 0:20] = 0.95  # 60 pixels: smaller than the ring's 105, so it goes
    model = keras.Sequential([keras.Input((20, 20, 1)), keras.layers.Rescaling(1 / 255)])
    spec = ServingSpec(task="seg", img_size=20, channels=1, postprocess="largest")
    path = write_servable(model, spec, tmp_path / "v", "toy")
    out = tf.saved_model.load(str(path)).signatures[PIXELS_SIGNATURE](pixels=tf.constant(planted[..., None] * 255))
    served = out["mask_probability"].numpy()
    np.testing.assert_allclose(served, postprocess_np(planted, "largest"), rtol=0, atol=1e-6)
    assert served[:, 1, 1].max() == 0.0 and (served[:, 7:11, 7:11] >= 0.5).all() and not served[1, 17:].any()
    assert read_export_info(path)["postprocess"] == "largest"
    with pytest.raises(ValueError, match="`--postprocess largest` is for segmentation"):
        ServingSpec(task="cls", img_size=20, channels=1, postprocess="largest")
    with pytest.raises(ValueError, match="`--postprocess largest` is for segmentation runs"):
        export.run(str(trained_runs["cls"]), out=str(tmp_path / "e"), postprocess="largest")


def test_classifier_exports_serve_the_runs_calibrated_probabilities(trained_runs, exported, tmp_path):
    """The run's temperature is in export.json and in the graph: softmax(log(p) / T), as evaluation scores."""
    from evaluation.run_files import load_fitted_temperature
    from metrics.calibration import apply_temperature
    from serving.export import spec_from_config
    from serving.signatures import compiled_serving_fns

    fitted = load_fitted_temperature(trained_runs["cls"])
    assert fitted is not None and read_export_info(exported["cls"])["temperature"] == fitted.temperature
    cfg = TrainConfig.load(trained_runs["cls"] / "config.json")
    assert spec_from_config(cfg, trained_runs["cls"]).temperature == fitted.temperature
    assert spec_from_config(cfg, None).temperature == 1.0  # last weights: nothing was fitted for them
    toy = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Softmax()])
    pixels = np.random.default_rng(0).uniform(0, 3, (5, 4, 4, 3)).astype(np.float32)
    raw = keras.ops.convert_to_numpy(toy(pixels))
    spec = ServingSpec(task="cls", img_size=4, channels=3, temperature=2.5)
    out = compiled_serving_fns(toy, spec)[PIXELS_SIGNATURE](tf.constant(pixels))
    np.testing.assert_allclose(out["probabilities"].numpy(), apply_temperature(raw, 2.5), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(out["class_id"].numpy(), raw.argmax(1))
    with pytest.raises(ValueError, match="`temperature` must be positive"):
        ServingSpec(task="cls", img_size=4, channels=3, temperature=0.0)


def test_a_runs_malignancy_cut_is_served_with_the_answer_at_it(trained_runs, tmp_path):
    """The cut saved in the run goes into the spec; the graph says, per image, whether P(malignant) reaches it."""
    import shutil

    from evaluation.cut import FittedCut, rule
    from evaluation.run_files import save_cut
    from serving.export import spec_from_config
    from serving.signatures import compiled_serving_fns

    run = tmp_path / "run"
    shutil.copytree(trained_runs["cls"], run)
    cfg = TrainConfig.load(run / "config.json")
    save_cut(run, FittedCut(0.3, (), rule(0.9)))
    assert spec_from_config(cfg, run).malignancy_cut == 0.3
    assert spec_from_config(TrainConfig(task="seg"), run).malignancy_cut is None  # a segmenter has none
    toy = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.GlobalAveragePooling2D(), keras.layers.Softmax()])
    pixels = np.random.default_rng(1).uniform(0, 3, (16, 4, 4, 3)).astype(np.float32)
    out = compiled_serving_fns(toy, ServingSpec(task="cls", img_size=4, channels=3, malignancy_cut=0.3))[
        PIXELS_SIGNATURE
    ](tf.constant(pixels))
    p_malignant = out["probabilities"].numpy()[:, CLASS_NAMES.index("malignant")]
    flags = out["malignant_at_cut"].numpy()
    np.testing.assert_array_equal(flags, p_malignant >= np.float32(0.3))
    assert flags.any() and not flags.all()  # the toy's scores fall on both sides of the cut
    np.testing.assert_allclose(out["malignancy_cut"].numpy(), np.full(16, 0.3), rtol=1e-7)
    plain = compiled_serving_fns(toy, ServingSpec(task="cls", img_size=4, channels=3))[PIXELS_SIGNATURE]
    assert "malignant_at_cut" not in plain(tf.constant(pixels))  # no cut, no answer at it
    with pytest.raises(ValueError, match="`malignancy_cut` must be a probability"):
        ServingSpec(task="cls", img_size=4, channels=3, malignancy_cut=1.5)
