"""predict.py: folders with bad files, masks at the original size, overlays, TTA, exit status."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import predict
from inference.backends import Backend
from inference.predict import call_backend, predict_files
from serving.rest import RejectedInput, ServingError
from tests.conftest import REPO, odd_images


def _write_bad_files(folder: Path) -> None:
    (folder / "truncated.png").write_bytes((folder / "l_97x131.png").read_bytes()[:200])
    (folder / "text.jpg").write_text("not an image")


@pytest.mark.slow
def test_segmentation_folder_with_corrupt_files(trained_runs, tmp_path):
    src = tmp_path / "src"
    files = odd_images(src)
    _write_bad_files(src)
    result = predict.run(str(src), model=str(trained_runs["seg"]), out=str(tmp_path / "out"), pixel_spacing=0.1)
    assert result.failed == 2 and len(result.rows) == len(files) + 2
    rows = {Path(r["file"]).name: r for r in result.rows}
    assert rows["truncated.png"]["error"].startswith("unreadable image") and "text.jpg" in rows
    for f in files:
        row = rows[f.name]
        assert row["error"] == ""
        h, w = Image.open(f).size[::-1]
        mask = np.array(Image.open(row["mask"]))
        assert mask.shape == (h, w) and set(np.unique(mask)) <= {0, 255}
        assert row["lesion_area_fraction"] == pytest.approx((mask > 0).mean())
        assert row["area_px"] == int((mask > 0).sum())
        if row["area_px"]:
            assert row["longest_diameter_mm"] == pytest.approx(row["longest_diameter_px"] * 0.1)
        overlay = Image.open(row["overlay"])
        assert overlay.size == (w, h) and overlay.mode == "RGB"
    with open(tmp_path / "out" / "predictions.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [r["file"] for r in table] == [r["file"] for r in result.rows]
    assert "longest_diameter_mm" in table[0] and "error" in table[0]
    saved = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert saved["task"] == "seg" and saved["pixel_spacing_mm"] == 0.1 and len(saved["predictions"]) == len(table)


@pytest.mark.slow
def test_cli_exit_status_counts_failures_and_classifier_rows(trained_runs, tmp_path):
    src = tmp_path / "src"
    odd_images(src)
    _write_bad_files(src)
    cmd = [sys.executable, "predict.py", "--model", str(trained_runs["cls"]), "--source", str(src),
           "--out", str(tmp_path / "out")]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "6 predicted, 2 failed" in done.stdout
    with open(tmp_path / "out" / "predictions.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if not r["error"]]
    for r in rows:
        probs = [float(r[f"prob_{c}"]) for c in ("normal", "benign", "malignant")]
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)
        assert r["class_name"] == ("normal", "benign", "malignant")[int(np.argmax(probs))]
        assert Path(r["overlay"]).is_file()


class _ImageAsProbability(Backend):
    """Stand-in segmenter: the 'probability' is the image's first channel at 16 x 16, scaled to [0, 1]."""

    task = "seg"
    description = "stand-in"

    def __init__(self):
        self.calls: list[int] = []

    def __call__(self, images):
        self.calls.append(len(images))
        maps = []
        for b in images:
            x = tf.io.decode_image(b, channels=1, expand_animations=False)
            maps.append(tf.image.resize(tf.cast(x, tf.float32), [16, 16], antialias=True)[..., 0].numpy() / 255)
        return {"mask_probability": np.stack(maps)}


def test_tta_averages_in_the_original_frame(tmp_path):
    img = np.zeros((40, 64), np.uint8)
    img[:, :20] = 255  # lesion on the left only: a flip not undone would move it right
    Image.fromarray(img).save(tmp_path / "left.png")
    plain = predict_files(_ImageAsProbability(), [tmp_path / "left.png"], tmp_path / "a", progress=False)
    backend = _ImageAsProbability()
    tta = predict_files(backend, [tmp_path / "left.png"], tmp_path / "b", tta=True, progress=False)
    assert backend.calls == [2]  # original and flipped in one call
    a = np.array(Image.open(plain.rows[0]["mask"]))
    b = np.array(Image.open(tta.rows[0]["mask"]))
    np.testing.assert_array_equal(a, b)
    assert b[:, :16].all() and not b[:, 24:].any()


class _GatesTheFlippedView(_ImageAsProbability):
    """Stand-in segmenter whose lesion gate says "no lesion" for the flipped view (the second image)."""

    def __call__(self, images):
        out = super().__call__(images)
        out["mask_probability"][1:] = 0.0
        return out


def test_tta_keeps_a_lesion_only_if_the_gate_keeps_it_in_both_views(tmp_path):
    img = np.zeros((40, 64), np.uint8)
    img[:, :20] = 255
    Image.fromarray(img).save(tmp_path / "left.png")
    row = predict_files(_GatesTheFlippedView(), [tmp_path / "left.png"], tmp_path / "a", tta=True, progress=False)
    assert row.rows[0]["lesion_area_fraction"] == 0.0  # averaging would have kept the 255-pixel strip at 0.5
    assert not np.array(Image.open(row.rows[0]["mask"])).any()


def test_postprocess_largest_drops_a_speck_and_fills_a_hole(tmp_path):
    img = np.zeros((64, 64), np.uint8)
    img[8:48, 8:48] = 255  # the lesion, 10x10 at the stand-in's 16 px
    img[24:32, 24:32] = 0  # a hole of 2x2 there
    img[56:64, 56:64] = 255  # a speck in the corner
    Image.fromarray(img).save(tmp_path / "a.png")
    plain = predict_files(_ImageAsProbability(), [tmp_path / "a.png"], tmp_path / "p", progress=False).rows[0]
    clean = predict_files(
        _ImageAsProbability(), [tmp_path / "a.png"], tmp_path / "c", progress=False, postprocess="largest"
    ).rows[0]
    assert plain["n_components"] == 2 and clean["n_components"] == 1
    mask = np.array(Image.open(clean["mask"])) > 0
    assert not mask[56:, 56:].any() and mask[24:32, 24:32].all()
    assert np.array(Image.open(plain["mask"]))[56:, 56:].any() and not np.array(Image.open(plain["mask"]))[28, 28]
    assert json.loads((tmp_path / "c" / "predictions.json").read_text())["postprocess"] == "largest"
    with pytest.raises(ValueError, match="`--postprocess largest` is for segmentation models"):
        predict_files(_RejectsOne(b""), [tmp_path / "a.png"], tmp_path / "x", progress=False, postprocess="largest")


class _RejectsOne(Backend):
    task = "cls"

    def __init__(self, bad: bytes):
        self.bad = bad

    def __call__(self, images):
        if self.bad in images:
            raise RejectedInput("HTTP 400: cannot decode")
        return {"probabilities": np.full((len(images), 3), 1 / 3, np.float32)}


def test_a_rejected_image_fails_alone_and_a_server_error_stops_everything():
    out = call_backend(_RejectsOne(b"b"), [b"a", b"b", b"c"])
    assert isinstance(out[1], str) and "cannot decode" in out[1]
    assert out[0]["probabilities"].shape == (3,) and out[2]["probabilities"].shape == (3,)

    class Down(Backend):
        def __call__(self, images):
            raise ServingError("cannot reach TF Serving")

    with pytest.raises(ServingError):
        call_backend(Down(), [b"a", b"b"])


def test_model_and_server_are_exclusive(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="exactly one"):
        predict.run(str(tmp_path / "a.png"), out=str(tmp_path / "o"))
    with pytest.raises(ValueError, match="pixel-spacing"):
        predict.run(str(tmp_path / "a.png"), model=str(tmp_path), pixel_spacing=-1.0)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["seg", "cls"])
def test_run_folder_and_its_saved_model_predict_the_same(task, trained_runs, exported, tmp_path):
    """The segmenter's SavedModel written at the end of training; the classifier's, by export.py."""
    from inference.backends import RunBackend, SavedModelBackend, open_backend

    run = trained_runs[task]
    saved = run / "saved_model" if task == "seg" else exported["cls"]
    images = [f.read_bytes() for f in odd_images(tmp_path)]
    from_run, from_saved = open_backend(str(run), None), open_backend(str(saved), None)
    assert isinstance(from_run, RunBackend) and isinstance(from_saved, SavedModelBackend)
    a, b = from_run(images), from_saved(images)
    assert set(a) == set(b)
    for k in a:
        if a[k].dtype.kind == "f":
            np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-5)
        else:
            np.testing.assert_array_equal(a[k], b[k])


def test_explain_writes_a_grad_cam_overlay_per_classified_image(trained_runs, exported, tmp_path):
    src = tmp_path / "src"
    files = odd_images(src)
    result = predict.run(str(src), model=str(trained_runs["cls"]), out=str(tmp_path / "out"), explain=True)
    assert result.failed == 0 and len(result.rows) == len(files)
    for row in result.rows:
        image = np.array(Image.open(row["file"]))
        heat = np.array(Image.open(row["explain"]))
        assert heat.shape[:2] == image.shape[:2] and heat.shape[2] == 3
    with pytest.raises(ValueError, match="`--explain` draws Grad-CAM for classifiers"):
        predict.run(str(src), model=str(trained_runs["seg"]), out=str(tmp_path / "s"), explain=True)
    with pytest.raises(ValueError, match="`--explain` needs a run folder"):
        predict.run(str(src), model=str(exported["cls"]), out=str(tmp_path / "e"), explain=True)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["seg", "cls"])
def test_evaluate_and_predict_give_each_image_the_same_answer_under_tta(task, trained_runs, tmp_path):
    """One TTA rule: evaluate.py --tta scores exactly what predict.py --tta writes for the same images.

    The run's data are scored as another dataset: with the gate and temperature fitted on the whole fold,
    as predict.py applies them (on the run's own fold, evaluation scores each half with the other half's).
    """
    import shutil

    import evaluate
    from config.train import TrainConfig
    from data.sources import discover_sources, resolve_sources
    from evaluation.cls import read_predictions

    run = tmp_path / "run"
    shutil.copytree(trained_runs[task], run, ignore=shutil.ignore_patterns("eval", "saved_model", "tensorboard"))
    data = TrainConfig.load(run / "config.json").data_dir[0]
    scored = evaluate.main(evaluate.parse_args(["--run", str(run), "--data-dir", f"same={data}", "--tta"]))["fold0"]
    cases = discover_sources(resolve_sources([data]))
    out = run / "eval" / "same-all-tta"
    ids = [r["id"] for r in scored["per_image"]] if task == "seg" else read_predictions(out / "predictions.csv")[0]
    files = [str(cases[i].image) for i in ids]
    rows = predict.run(files, model=str(run), out=str(tmp_path / "p"), tta=True).rows
    assert [r["file"] for r in rows] == files and not any(r["error"] for r in rows)
    if task == "seg":
        assert [r["area_px"] == 0 for r in rows] == [r["empty"] for r in scored["per_image"]]
    else:
        _, _, probs = read_predictions(out / "predictions.csv")
        predicted = np.array([[r[f"prob_{c}"] for c in ("normal", "benign", "malignant")] for r in rows])
        np.testing.assert_allclose(predicted, probs, atol=1e-5)


@pytest.mark.slow
def test_native_resolution_dice_scores_the_masks_predict_writes(trained_runs, tmp_path):
    """metrics.json's dice_native is the Dice of predict.py's mask file against the true mask, at the image's size."""
    import evaluate
    from config.train import TrainConfig
    from data.scan import merge_masks
    from data.sources import discover_sources, resolve_sources

    run = trained_runs["seg"]
    data = TrainConfig.load(run / "config.json").data_dir[0]  # scored with the fold's gate, as predict.py applies it
    scored = evaluate.main(evaluate.parse_args(["--run", str(run), "--data-dir", f"same={data}"]))["fold0"]
    cases = discover_sources(resolve_sources([data]))
    records = [cases[r["id"]] for r in scored["per_image"]]
    rows = predict.run([str(c.image) for c in records], model=str(run), out=str(tmp_path / "p")).rows
    for case, row, entry in zip(records, rows, scored["per_image"], strict=True):
        written = np.array(Image.open(row["mask"])) > 0
        truth = merge_masks(case, written.shape)[0]
        total = written.sum() + truth.sum()
        dice = 2 * (written & truth).sum() / total if total else 1.0
        assert entry["dice_native"] == pytest.approx(dice), case.case_id
    assert scored["dice_native"] == pytest.approx(np.mean([e["dice_native"] for e in scored["per_image"]]))
    assert {"iou_native", "lesion_dice_native", "dice_native_ci95"} <= set(scored)
    assert scored["shift"]["n_images"] == len(records)  # how the images compare with the training images


@pytest.mark.slow
def test_images_unlike_the_training_images_are_flagged_by_predict_and_data_check(trained_runs, tmp_path):
    from config.train import TrainConfig
    from data.imageio import read_image
    from data.sources import discover_sources, resolve_sources

    run = trained_runs["seg"]
    cases = list(discover_sources(resolve_sources(TrainConfig.load(run / "config.json").data_dir)).values())[:4]
    tinted = tmp_path / "tinted"
    tinted.mkdir()
    for case in cases:  # another vendor's colour-tinted frames of the same scans
        gray = read_image(case.image)[:, :, :1].astype(np.float32)
        rgb = np.clip(np.concatenate([gray, gray * 0.75, gray * 0.45], axis=2), 0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(tinted / case.image.name)
    for model in (run, run / "saved_model"):  # the run folder, and the SavedModel it exported
        result = predict.run([str(tinted)], model=str(model), out=str(tmp_path / model.name))
        assert all("colour_fraction" in r["shift"].split(";") for r in result.rows)
        assert "colour_fraction" in result.shift["shifted"] and result.shift["flagged"] == len(cases)
        with open(tmp_path / model.name / "predictions.csv", newline="") as fh:
            assert [r["shift"] for r in csv.DictReader(fh)] == [r["shift"] for r in result.rows]
    own = predict.run([str(c.image) for c in cases], model=str(run), out=str(tmp_path / "own"))
    assert not any("colour_fraction" in r["shift"] for r in own.rows) and own.shift["shifted"] == {}
    check = subprocess.run(
        [sys.executable, "-m", "data", "check", "--run", str(run), "--data-dir", str(tinted)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert check.returncode == 1, check.stderr[-2000:]
    assert f"{len(cases)} of {len(cases)} image(s) look unlike the training images" in check.stdout
    assert "colour_fraction" in check.stdout.split("shifted: ")[1]


def test_pngs_are_lossless_whatever_the_channels(tmp_path):
    from inference.drawing import encode_png

    rng = np.random.default_rng(0)
    for shape in ((13, 17), (13, 17, 1), (13, 17, 3), (13, 17, 4)):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        decoded = tf.io.decode_png(encode_png(image), channels=1 if len(shape) == 2 else shape[2]).numpy()
        np.testing.assert_array_equal(decoded.reshape(image.shape), image)  # RGB order kept, every pixel


@pytest.mark.slow
def test_reading_ahead_and_writing_behind_gives_the_same_outputs_and_overlays_are_optional(trained_runs, tmp_path):
    src = tmp_path / "src"
    files = odd_images(src) + odd_images(tmp_path / "more", seed=1)
    backend = open_backend_for(trained_runs["seg"])
    one = predict_files(backend, files, tmp_path / "one", batch_size=3, progress=False, workers=1)
    many = predict_files(backend, files, tmp_path / "many", batch_size=3, progress=False, workers=3)
    bare = predict_files(backend, files, tmp_path / "bare", batch_size=3, progress=False, overlays=False)
    for a, b, c in zip(one.rows, many.rows, bare.rows, strict=True):
        assert {k: v for k, v in a.items() if k not in ("mask", "overlay")} == {
            k: v for k, v in b.items() if k not in ("mask", "overlay")
        }
        for key in ("mask", "overlay"):
            np.testing.assert_array_equal(np.array(Image.open(a[key])), np.array(Image.open(b[key])))
        np.testing.assert_array_equal(np.array(Image.open(a["mask"])), np.array(Image.open(c["mask"])))
        assert c["overlay"] == ""
    assert not (tmp_path / "bare" / "overlays").exists()


def open_backend_for(run: Path):
    from inference.backends import open_backend

    return open_backend(str(run), None)


@pytest.mark.slow
def test_a_runs_malignancy_cut_gives_each_image_its_answer_at_the_cut(trained_runs, tmp_path):
    import shutil

    from evaluation.cut import FittedCut, rule
    from evaluation.run_files import THRESHOLD_FILE, save_cut

    run = tmp_path / "run"
    shutil.copytree(trained_runs["cls"], run)
    files = odd_images(tmp_path / "src")
    (run / THRESHOLD_FILE).unlink(missing_ok=True)
    bare = predict_files(open_backend_for(run), files, tmp_path / "bare", progress=False)
    assert all("malignant_at_cut" not in r for r in bare.rows)  # a run without a cut: no answer at one
    cut = float(np.median([r["prob_malignant"] for r in bare.rows]))  # half the images on each side
    save_cut(run, FittedCut(cut, (), rule(0.9)))
    for tta in (False, True):
        rows = predict_files(open_backend_for(run), files, tmp_path / f"cut{tta}", tta=tta, progress=False).rows
        answers = [r["malignant_at_cut"] for r in rows]
        assert all(r["malignancy_cut"] == pytest.approx(cut) for r in rows)
        assert answers == [r["prob_malignant"] >= r["malignancy_cut"] for r in rows]  # the combined views' with TTA
        assert tta or (any(answers) and not all(answers))  # the median cut: images on both sides
