"""`train.py --task cls --crop lesion`: a lesion classifier trained, scored and refused where it cannot work."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

import evaluate
import export
import predict
import train
from core.errors import DataError, OptionError
from data.discover import check_lesion_masks, discover
from data.synthetic import SynthConfig, generate_synthetic
from evaluation.cls import run_images
from tests.conftest import lesion_manifest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lesion_run(tmp_path_factory) -> tuple[dict, Path, Path]:
    """The default classifier (EfficientNet-Lite0 from ImageNet) trained on lesion crops for one epoch, with an
    external site and a segmenter (:func:`_threshold_segmenter`) that diagnoses with it; and the data."""
    root = tmp_path_factory.mktemp("lesion")
    data = generate_synthetic(root / "synth", SynthConfig(per_class=8, size=64, seed=1))
    site = lesion_manifest(generate_synthetic(root / "site", SynthConfig(per_class=4, size=64, seed=3)), root / "bra")
    seg = _threshold_segmenter(data, root)
    result = train.run(
        segmenter=str(seg),
        task="cls",
        crop="lesion",
        epochs=1,
        max_samples=8,
        img_size=32,
        batch_size=4,
        data_dir=str(data),
        external=[str(site)],
        project=str(root / "runs"),
    )
    return result, data, seg


def test_a_lesion_classifier_trains_on_benign_and_malignant_crops(lesion_run, capsys) -> None:
    result, data, _ = lesion_run
    run_dir = Path(result["run_dir"])
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["crop"], config["classes"], config["weights"]) == ("lesion", ["benign", "malignant"], "imagenet")
    with open(run_dir / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    fold0 = json.loads((run_dir / "splits.json").read_text())["folds"][0]["val"]
    cases = discover(data)
    lesions = [i for i in fold0 if cases[i].label != "normal"][:8]
    assert [r["case_id"] for r in rows] == lesions and {r["label"] for r in rows} <= {"benign", "malignant"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["val_cases"] == len(lesions) and "malignant_auc" in metrics
    assert metrics["malignancy_cut"]["rule"].startswith("the highest cut with sensitivity >= 0.90")
    external = json.loads(next((run_dir / "external").glob("*/metrics.json")).read_text())
    assert external["n_images"] == 8 and "malignant_auc" in external  # the site's 4 benign and 4 malignant
    # the images it reads are the crops: the lesion's context, not the 64-px frame squeezed to 32 px
    crops = run_images(run_dir, lesions[:2])
    assert crops.shape == (2, 32, 32, 3)
    assert not (run_dir / "saved_model").exists()
    # evaluate.py scores the same crops of the same cases
    own = evaluate.main(evaluate.parse_args(["--run", str(run_dir)]))
    assert own["fold0"]["malignant_auc"] == pytest.approx(metrics["malignant_auc"], abs=1e-6)


def test_a_lesion_classifier_is_not_run_on_whole_images(lesion_run, tmp_path) -> None:
    run_dir = Path(lesion_run[0]["run_dir"])
    image = next(lesion_run[1].glob("benign/*).png"))
    with pytest.raises(OptionError, match="lesion classifier"):
        predict.main(predict.parse_args(["--model", str(run_dir), "--source", str(image), "--out", str(tmp_path)]))
    with pytest.raises(OptionError, match="lesion classifier"):
        export.run(str(run_dir), out=str(tmp_path / "export"))


def test_a_lesion_image_without_its_mask_cannot_be_cropped(tmp_path) -> None:
    data = generate_synthetic(tmp_path / "synth", SynthConfig(per_class=2, size=64, seed=1))
    cases = list(discover(data).values())
    gone = next(c for c in cases if c.label == "malignant")
    for m in gone.masks:
        m.unlink()
    cases = list(discover(data).values())
    with pytest.raises(DataError, match="cannot place its crop"):
        check_lesion_masks(cases, "cls", False, str(data), crop="lesion")
    kept, left = check_lesion_masks(cases, "cls", True, str(data), crop="lesion")
    assert left == [gone.case_id] and len(kept) == len(cases) - 1
    assert check_lesion_masks(cases, "cls", False, str(data)) == (cases, [])  # whole frames need no mask


def _threshold_segmenter(data: Path, root: Path, lean: bool = False) -> Path:
    """A segmentation run folder whose 32-px model marks the bright pixels (no gate): masks known in advance.
    ``lean``: it also reads the left neighbour, so the mirror image's map, mirrored back, is not its map."""
    import keras

    from config.train import TrainConfig
    from core.atomic import write_json

    run = root / ("leaning" if lean else "bright")
    write_json(run / "config.json", TrainConfig(task="seg", img_size=32, data_dir=(str(data),)).to_dict())
    inputs = keras.Input((32, 32, 3))
    conv = keras.layers.Conv2D(1, (1, 3) if lean else 1, padding="same", activation="sigmoid")
    model = keras.Model(inputs, conv(inputs))
    if lean:
        kernel = np.zeros((1, 3, 3, 1), np.float32)
        kernel[0, 0], kernel[0, 1] = 1 / 48, 1 / 24
        conv.set_weights([kernel, np.array([-190 * 1.5 / 8], np.float32)])
    else:
        conv.set_weights([np.full((1, 1, 3, 1), 1 / 24, np.float32), np.array([-190 / 8], np.float32)])
    (run / "weights").mkdir(parents=True)
    model.save(run / "weights" / "best.keras")
    return run


def _small_lesion_classifier(lesion_run: Path, root: Path, kind: str = "pool") -> Path:
    """A copy of the lesion classifier's run with a small model of the same input in place of Lite0 (the
    diagnosis does not depend on the classifier's architecture; the copy keeps the shared run as it is).
    ``kind``: ``pool`` (the pixels' mean), ``flat`` (a confident dense layer over the pixels: a mirrored crop gets
    other probabilities), ``cam`` (a convolution under Lite0's Grad-CAM layer name: a full-size Grad-CAM map)."""
    import keras

    from models.classifier import LOGITS
    from models.registry import get_model_entry

    run = Path(shutil.copytree(lesion_run, root / kind, ignore=shutil.ignore_patterns("eval", "diagnosis")))
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    if kind == "cam":
        x = keras.layers.Conv2D(
            8, 3, padding="same", activation="relu", name=get_model_entry("efficientnet_lite0").cam_layer
        )(x)
    x = keras.layers.Flatten()(x) if kind == "flat" else keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(3, name=LOGITS)
    model = keras.Model(inputs, keras.layers.Softmax()(dense(x)))
    if kind == "flat":  # fixed weights, whatever the global random state
        kernel, bias = dense.get_weights()
        dense.set_weights([np.random.default_rng(0).normal(0, 0.2, kernel.shape).astype(np.float32), bias])
    model.save(run / "weights" / "best.keras")
    return run


def test_the_diagnosis_reads_the_lesions_its_segmenter_found(lesion_run, tmp_path) -> None:
    # a segmenter and a classifier that a mirror image changes: --tta's views must each be put back (below)
    run_dir = _small_lesion_classifier(Path(lesion_run[0]["run_dir"]), tmp_path, "flat")
    seg = _threshold_segmenter(lesion_run[1], tmp_path, lean=True)
    other = generate_synthetic(tmp_path / "other", SynthConfig(per_class=2, size=64, seed=4))
    args = ["--run", str(run_dir), "--segmenter", str(seg)]
    # another dataset first: the diagnosis' cut is fitted on the classifier's validation fold on the way
    ext = evaluate.main(evaluate.parse_args([*args, "--data-dir", str(other)]))["fold0"]
    own = json.loads((run_dir / "eval" / "diagnosis-leaning-own-val" / "metrics.json").read_text())
    assert own["malignancy_cut"]["scored_with"] in (
        "each half of the validation fold with the other half's cut",
        "no cut (evaluate the diagnosis on the lesion classifier's validation fold first)",
    )
    fold0 = json.loads((run_dir / "splits.json").read_text())["folds"][0]["val"]
    assert own["n_images"] == len(fold0) and own["per_class"]["normal"]["support"] > 0  # normal images too
    assert own["normal_called_normal"] is not None
    assert ext["n_images"] == 6 and ext["lesions_found"] > 0
    out = run_dir / "eval" / "diagnosis-leaning-other-all"
    rows = json.loads((out / "diagnosis.json").read_text())
    assert len(rows) == 6
    predicted = tmp_path / "predicted"
    folders = [str(other / c) for c in ("normal", "benign", "malignant")]
    predict.main(predict.parse_args(["--model", str(seg), "--source", *folders, "--out", str(predicted)]))
    for row in rows:
        assert (row["answer"] == "normal") == (not row["lesions"])
        if row["lesions"]:
            assert row["p_malignant"] == pytest.approx(max(q["p_malignant"] for q in row["lesions"]))
        # the lesions are those of the segmenter's own mask, as predict.py writes it at the image's size: its
        # largest lesion lies inside the boxes (up to a pixel of the 32-px map; a lesion of a pixel or two there
        # may vanish in the resized mask, so a box need not hold any of it)
        written = np.array(Image.open(predicted / "masks" / f"{row['case_id']}_mask.png")) > 0
        assert row["lesions"] or not written.any()
        step = written.shape[0] / 32, written.shape[1] / 32
        boxed = np.zeros_like(written)
        for lesion in row["lesions"]:
            y0, x0, y1, x1 = lesion["box"]
            box = np.s_[
                max(0, int(y0 - step[0])) : int(y1 + step[0]) + 1, max(0, int(x0 - step[1])) : int(x1 + step[1]) + 1
            ]
            boxed[box] = True
        if row["lesions"]:
            labels, _ = ndimage.label(written, np.ones((3, 3), bool))
            largest = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
            assert not (largest & ~boxed).any()
    assert any(row["lesions"] for row in rows)
    with pytest.raises(OptionError, match="segmentation run"):
        evaluate.main(evaluate.parse_args(["--run", str(run_dir), "--segmenter", str(run_dir)]))
    _export_and_predict_diagnose_as_evaluate_did(run_dir, seg, other, rows, tmp_path)


def _export_and_predict_diagnose_as_evaluate_did(run_dir: Path, seg: Path, other: Path, rows: list, tmp_path) -> None:
    """The exported diagnosis and predict.py (from the runs and from the export) give evaluate.py's answers."""
    import tensorflow as tf

    from evaluation.diagnosis import load_diagnosis_cut

    folders = [str(other / c) for c in ("normal", "benign", "malignant")]
    exported = export.run(str(run_dir), segmenter=str(seg), out=str(tmp_path / "export"))
    info = json.loads((exported.path / "assets.extra" / "export.json").read_text())
    assert info["task"] == "diagnosis" and info["signatures"] == ["serving_default", "serving_tta"]
    assert info["malignancy_cut"] == load_diagnosis_cut(run_dir, seg).threshold
    assert (exported.path / "assets.extra" / "tf_serving_warmup_requests").is_file()
    serve = tf.saved_model.load(str(exported.path)).signatures["serving_default"]
    images = [next(other.rglob(f"{row['case_id']}.png")).read_bytes() for row in rows]
    out = {k: v.numpy() for k, v in serve(images=tf.constant(images)).items()}
    for k, row in enumerate(rows):
        found = out["lesion_found"][k]
        assert found.sum() == len(row["lesions"])
        np.testing.assert_allclose(
            out["lesion_boxes"][k][found], [q["box"] for q in row["lesions"]] or np.zeros((0, 4))
        )
        np.testing.assert_allclose(
            out["lesion_p_malignant"][k][found], [q["p_malignant"] for q in row["lesions"]], atol=1e-4
        )
        assert out["class_name"][k].decode() == row["answer"]
    for model, extra in ((str(run_dir), ["--segmenter", str(seg)]), (str(exported.path), [])):
        dest = tmp_path / f"predict-{len(extra)}"
        result = predict.main(predict.parse_args(["--model", model, *extra, "--source", *folders, "--out", str(dest)]))
        assert result.failed == 0 and (dest / "overlays").is_dir()
        by_file = {Path(r["file"]).stem: r for r in result.rows}
        for row in rows:
            mine = by_file[row["case_id"]]
            assert mine["class_name"] == row["answer"]
            assert mine["prob_malignant"] == pytest.approx(row["p_malignant"], abs=1e-4)
            assert len(json.loads(mine["lesions"])) == len(row["lesions"])
    # --postprocess largest: one lesion per image at most, and predict.py answers as evaluate.py does
    args = ["--run", str(run_dir), "--segmenter", str(seg), "--data-dir", str(other), "--postprocess", "largest"]
    evaluate.main(evaluate.parse_args(args))
    largest = json.loads((run_dir / "eval" / "diagnosis-leaning-other-all-largest" / "diagnosis.json").read_text())
    assert all(len(row["lesions"]) <= 1 for row in largest) and any(row["lesions"] for row in largest)
    assert sum(len(r["lesions"]) for r in largest) < sum(len(r["lesions"]) for r in rows)  # several lesions before
    dest = tmp_path / "predict-largest"
    extra = ["--segmenter", str(seg), "--postprocess", "largest", "--out", str(dest)]
    result = predict.main(predict.parse_args(["--model", str(run_dir), *extra, "--source", *folders]))
    by_file = {Path(r["file"]).stem: r for r in result.rows}
    for row in largest:
        assert by_file[row["case_id"]]["class_name"] == row["answer"]
        assert by_file[row["case_id"]]["prob_malignant"] == pytest.approx(row["p_malignant"], abs=1e-4)
        boxes = [q["box"] for q in json.loads(by_file[row["case_id"]]["lesions"])]
        np.testing.assert_allclose(
            np.reshape(boxes, (-1, 4)), np.reshape([q["box"] for q in row["lesions"]], (-1, 4)), atol=0.05
        )
    # --tta: predict.py from the runs and from the export's serving_tta answers as evaluate.py --tta scores
    args = ["--run", str(run_dir), "--segmenter", str(seg), "--data-dir", str(other)]
    evaluate.main(evaluate.parse_args([*args, "--tta"]))
    tta = json.loads((run_dir / "eval" / "diagnosis-leaning-other-all-tta" / "diagnosis.json").read_text())
    # both views count: the lesions found and their probabilities differ from the plain diagnosis'
    assert any(
        [q["box"] for q in a["lesions"]] != [q["box"] for q in b["lesions"]] for a, b in zip(tta, rows, strict=True)
    )
    assert any(abs(a["p_malignant"] - b["p_malignant"]) > 0.01 for a, b in zip(tta, rows, strict=True))
    for model, extra in ((str(run_dir), ["--segmenter", str(seg)]), (str(exported.path), [])):
        dest = tmp_path / f"predict-tta-{len(extra)}"
        result = predict.main(
            predict.parse_args(["--model", model, *extra, "--tta", "--source", *folders, "--out", str(dest)])
        )
        by_file = {Path(r["file"]).stem: r for r in result.rows}
        for row in tta:
            mine = by_file[row["case_id"]]
            assert mine["class_name"] == row["answer"]
            assert mine["prob_malignant"] == pytest.approx(row["p_malignant"], abs=1e-4)
            boxes = np.reshape([q["box"] for q in json.loads(mine["lesions"])], (-1, 4))
            np.testing.assert_allclose(boxes, np.reshape([q["box"] for q in row["lesions"]], (-1, 4)), atol=0.05)


def test_the_diagnosis_explains_each_lesion_inside_its_crop(lesion_run, tmp_path) -> None:
    """--explain: each lesion's Grad-CAM inside its crop, the map of the crop evaluation reads."""
    import cv2

    from config.train import TrainConfig
    from evaluation.run_files import load_inference_model
    from inference.backends import DiagnosisBackend
    from inference.explain import LesionExplainer
    from models.gradcam import cam_model, grad_cam
    from models.registry import get_model_entry
    from pipeline.crop import square_box
    from pipeline.dataset import build_crop_dataset

    seg = _threshold_segmenter(lesion_run[1], tmp_path)
    other = generate_synthetic(tmp_path / "other", SynthConfig(per_class=2, size=64, seed=4))
    folders = [str(other / c) for c in ("normal", "benign", "malignant")]
    # --explain: a map for every image
    run_dir = _small_lesion_classifier(Path(lesion_run[0]["run_dir"]), tmp_path, "cam")
    extra = ["--segmenter", str(seg), "--explain", "--out", str(tmp_path / "explained")]
    result = predict.main(predict.parse_args(["--model", str(run_dir), *extra, "--source", *folders]))
    assert all(Path(r["explain"]).is_file() for r in result.rows) and any(json.loads(r["lesions"]) for r in result.rows)
    # the explained map: inside the lesion's crop only, and the Grad-CAM of the crop evaluation reads
    row = next(r for r in result.rows if len(json.loads(r["lesions"])) == 1)
    image = Path(row["file"])
    answer = {k: v[0] for k, v in DiagnosisBackend(run_dir, seg)([image.read_bytes()]).items()}
    heat = LesionExplainer(run_dir)([image.read_bytes()], [answer])[0]
    cfg = json.loads((run_dir / "config.json").read_text())
    box = answer["lesion_boxes"][answer["lesion_found"]][0]
    y0, x0, y1, x1 = np.round(square_box(box, cfg["crop_margin"]).numpy()).astype(int)
    (h, w), inside = heat.shape, np.zeros(heat.shape, bool)
    ty0, tx0, ty1, tx1 = max(y0, 0), max(x0, 0), min(y1, h), min(x1, w)
    inside[ty0:ty1, tx0:tx1] = True
    assert (np.isfinite(heat) == inside).all() and inside.any() and (~inside).any()
    lesion_cfg = TrainConfig.load(run_dir / "config.json")
    crop = next(iter(build_crop_dataset([image], box[None], lesion_cfg.pipeline()))).numpy()
    cam = cam_model(load_inference_model(run_dir / "weights" / "best.keras"), get_model_entry(cfg["model"]).cam_layer)
    cls = 2 if answer["lesion_p_malignant"][answer["lesion_found"]][0] >= 0.5 else 1
    small = grad_cam(cam, crop, np.array([cls]))[0][0]
    assert small.max() > 0  # a map to compare, not zeros against zeros
    expected = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(heat[ty0:ty1, tx0:tx1], expected[ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0], atol=0.02)


def test_training_with_a_segmenter_diagnoses_the_validation_fold_and_each_external_site(lesion_run, tmp_path) -> None:
    """train.py --segmenter scores the diagnosis of every image of the validation fold (normal ones too, fitting
    the cut) and of the external site, as evaluate.py --segmenter does afterwards with that cut."""
    result, data, seg = lesion_run
    run_dir = Path(result["run_dir"])
    assert set(result["diagnosis"]) == {"own-val", "bra-all"}
    own = json.loads((run_dir / "eval" / "diagnosis-bright-own-val" / "metrics.json").read_text())
    cases = discover(data)
    fold0 = json.loads((run_dir / "splits.json").read_text())["folds"][0]["val"][:8]  # --max-samples 8
    normals = sum(cases[i].label == "normal" for i in fold0)
    assert own["n_images"] == len(fold0) and own["split"] == "val" and normals > 0
    assert own["per_class"]["normal"]["support"] == normals  # the diagnosis scores normal images; the classifier not
    page = (run_dir / "eval" / "diagnosis-bright-own-val" / "report.html").read_text()
    assert 'data-file="plots/lesions.png"' in page  # the lesions drawn on their images
    trained = json.loads((run_dir / "eval" / "diagnosis-bright-bra-all" / "metrics.json").read_text())
    assert trained["n_images"] == result["diagnosis"]["bra-all"]["n_images"] == 8 and trained["lesions_found"] > 0
    assert trained["malignancy_cut"]["threshold"] == own["malignancy_cut"]["threshold"]
    copy = Path(shutil.copytree(run_dir, tmp_path / "again", ignore=shutil.ignore_patterns("eval")))
    site = Path(json.loads((run_dir / "config.json").read_text())["external"][0])
    again = evaluate.main(evaluate.parse_args(["--run", str(copy), "--segmenter", str(seg), "--data-dir", str(site)]))
    for key in ("malignant_auc", "macro_f1", "n_images", "lesions_found", "sensitivity", "specificity"):
        assert again["fold0"].get(key) == pytest.approx(trained.get(key), abs=1e-6), key
    with pytest.raises(OptionError, match="needs --crop lesion"):
        train.run(task="cls", segmenter=str(seg), epochs=1, max_samples=8, project=str(tmp_path / "runs"))
    with pytest.raises(OptionError, match="must be a segmentation run"):
        train.run(task="cls", crop="lesion", segmenter=str(run_dir), epochs=1, project=str(tmp_path / "runs"))
