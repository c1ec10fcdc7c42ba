"""External validation, multi-site training, leave-one-site-out and starting from another run's weights."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import train
from config.train import TrainConfig
from data.synthetic import SynthConfig, generate_synthetic
from evaluation.cut import rule
from tests.conftest import lesion_manifest

pytestmark = pytest.mark.slow

TINY = {"img_size": 32, "batch_size": 4, "augment": "none", "epochs": 1, "export": False}


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sites")
    a = generate_synthetic(root / "siteA", SynthConfig(per_class=6, size=64, seed=1))
    b = generate_synthetic(root / "siteB", SynthConfig(per_class=4, size=64, seed=2))
    c = generate_synthetic(root / "siteC", SynthConfig(per_class=4, size=64, seed=3))
    return {"a": a, "b": b, "bra": lesion_manifest(c, root / "bra")}


def test_fold_flag_takes_a_site() -> None:
    cfg = train.config_from_args(train.parse_args(["--data-dir", "a", "b=x/y", "--fold", "site:b"]))
    assert (cfg.fold, cfg.holdout_site, cfg.data_dir) == (0, "b", ("a", "b=x/y"))
    with pytest.raises(ValueError, match="site name"):
        train.config_from_args(train.parse_args(["--fold", "site:"]))
    with pytest.raises(ValueError, match="site:NAME"):
        train.config_from_args(train.parse_args(["--fold", "one"]))
    # A run saved before several sources existed keeps loading: its data_dir was one string.
    old = TrainConfig.from_dict({**TrainConfig().to_dict(), "data_dir": "some/folder"})
    assert old.data_dir == ("some/folder",)
    assert TrainConfig.from_dict(old.to_dict()) == old


def test_external_classification_reports_malignancy_by_patient_and_scanner(classifier_run) -> None:
    """conftest's classifier run, validated on a manifest site of 8 images, 4 patients, 2 scanners."""
    res, run = classifier_run.result, classifier_run.run_dir
    ext = json.loads((run / "external" / "bra" / "metrics.json").read_text())
    assert ext["n_images"] == 8 and ext["split"] == "all" and ext["excluded"] == {}
    assert 0 <= ext["malignant_auc"] <= 1 and len(ext["malignant_auc_ci95"]) == 2
    assert ext["lesion_groups"] == 4  # bootstrapped over the 4 patients, not the 8 images
    assert 0 <= ext["lesion_called_normal"] <= 1
    saved = json.loads((run / "malignancy_threshold.json").read_text())
    assert ext["malignancy_threshold"] == pytest.approx(saved["threshold"])  # chosen on the internal validation fold
    assert saved["rule"] == ext["malignancy_cut"]["rule"] == rule(0.9)  # for sensitivity 0.90, the default
    assert set(ext["per_device"]) == {"GE Logiq 7", "Toshiba"}
    assert sum(d["n"] for d in ext["per_device"].values()) == 8
    assert (run / "external" / "bra" / "plots" / "roc.png").is_file()
    assert (run / "external" / "bra" / "plots" / "by_site_and_scanner.png").is_file()
    assert (run / "external" / "bra" / "predictions.csv").is_file()
    assert res["external"]["bra"]["malignant_auc"] == pytest.approx(ext["malignant_auc"])
    internal = json.loads((run / "metrics.json").read_text())
    assert internal["external"]["bra"]["n_images"] == 8  # beside the internal metrics
    assert "malignant_auc" in internal


def test_two_sites_leave_one_out_with_external_segmentation(sites, tmp_path, capsys) -> None:
    res = train.run(
        task="seg",
        data_dir=[str(sites["a"]), f"second={sites['b']}"],
        fold="site:second",
        external=[str(sites["bra"])],
        base_filters=4,
        project=str(tmp_path),
        **TINY,
    )
    run = Path(res["run_dir"])
    splits = json.loads((run / "splits.json").read_text())
    assert splits["holdout_site"] == "second"
    (fold,) = splits["folds"]
    assert all(i.startswith("second/") for i in fold["val"]) and len(fold["val"]) == 12
    assert all(i.startswith("siteA/") for i in fold["train"])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["val_cases"] == 12 and metrics["train_cases"] == 18
    ext = json.loads((run / "external" / "bra" / "metrics.json").read_text())
    assert ext["n_images"] == 8 and set(ext["per_device"]) == {"GE Logiq 7", "Toshiba"}
    assert "below_0.5" in ext["per_device"]["Toshiba"] and "dice_below_0.5" in ext
    assert (run / "external" / "bra" / "plots" / "by_site_and_scanner.png").is_file()
    out = capsys.readouterr().out
    assert "External bra: dice" in out
    # evaluate.py re-scores the held-out site as the run did.
    import evaluate

    again = evaluate.main(evaluate.parse_args(["--run", str(run)]))["fold0"]
    assert again["n_images"] == 12 and again["dice"] == pytest.approx(metrics["dice"], abs=1e-6)


def test_unknown_site_is_a_clear_error(sites, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"one of the sites \['siteA', 'siteB'\]"):
        train.run(task="seg", data_dir=[str(sites["a"]), str(sites["b"])], fold="site:rio", project=str(tmp_path))
    assert not (tmp_path / "seg").exists()


def _collision_site(root: Path, image_dir: Path) -> Path:
    """A manifest site whose ids collide with the run's data, holding its own exact cross-class duplicate."""
    rows = ["id,image,label,mask"]
    for k, img in enumerate(sorted(image_dir.glob("benign/*).png"))[:3]):
        rows.append(f"benign ({k + 1}),{img},benign,{img.with_name(img.stem + '_mask.png')}")
    for k, img in enumerate(sorted(image_dir.glob("malignant/*).png"))[:3]):
        rows.append(f"malignant ({k + 1}),{img},malignant,{img.with_name(img.stem + '_mask.png')}")
    twin = root / "twin.png"
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(sorted(image_dir.glob("benign/*).png"))[0], twin)  # the same pixels as "benign (1)"
    rows.append(f"twin,{twin},malignant,{sorted(image_dir.glob('benign/*).png'))[0].with_name('benign (1)_mask.png')}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root / "manifest.csv"


def test_evaluate_leaves_out_the_other_datasets_own_conflicts(trained_runs, sites, tmp_path) -> None:
    import evaluate

    run = shutil.copytree(trained_runs["cls"], tmp_path / "run")
    splits = json.loads((run / "splits.json").read_text())
    splits["excluded"] = ["benign (2)", "malignant (3)"]  # the run's own exclusions: ids that also exist elsewhere
    (run / "splits.json").write_text(json.dumps(splits))
    one = _collision_site(tmp_path / "hospital1", sites["b"])
    two = _collision_site(tmp_path / "hospital2", sites["b"])
    res = evaluate.main(evaluate.parse_args(["--run", str(run), "--data-dir", str(one)]))["fold0"]
    with open(run / "eval" / "hospital1-all" / "predictions.csv", newline="") as f:
        ids = [row["case_id"] for row in csv.DictReader(f)]
    # "benign (1)" and "twin" are one image filed under two classes: both out. The run's exclusions are not applied.
    assert sorted(res["excluded"]) == ["benign (1)", "twin"]
    assert sorted(ids) == ["benign (2)", "benign (3)", "malignant (1)", "malignant (2)", "malignant (3)"]
    assert res["n_images"] == 5
    evaluate.main(evaluate.parse_args(["--run", str(run), "--data-dir", str(two)]))
    assert (run / "eval" / "hospital2-all" / "metrics.json").is_file()  # two manifest.csv files, two folders
    assert json.loads((run / "eval" / "hospital1-all" / "metrics.json").read_text())["n_images"] == 5


def test_segmentation_starts_from_another_runs_weights(trained_runs) -> None:
    import keras

    from training.seg import build_seg_model

    best = trained_runs["seg"] / "weights" / "best.keras"
    saved = json.loads((trained_runs["seg"] / "config.json").read_text())
    cfg = TrainConfig(task="seg", img_size=64, base_filters=saved["base_filters"], weights=str(best))
    model = build_seg_model(cfg)  # another input size: convolutions do not care
    source = keras.models.load_model(best, compile=False)
    for a, b in zip(model.weights, source.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="does not fit --model unet with --base-filters 8"):
        build_seg_model(TrainConfig(task="seg", img_size=32, base_filters=8, weights=str(best)))
    with pytest.raises(
        ValueError, match="imagenet. needs an ImageNet encoder: for segmentation --model efficientnet_lite0"
    ):
        build_seg_model(TrainConfig(task="seg", img_size=32, weights="imagenet"))
    with pytest.raises(FileNotFoundError, match="not found"):
        build_seg_model(TrainConfig(task="seg", img_size=32, weights=str(best.with_name("nope.keras"))))
