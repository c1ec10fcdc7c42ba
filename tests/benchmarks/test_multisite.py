"""multisite.py: the two-site folds joined from each site's own, and the section it writes."""

from __future__ import annotations

import argparse
import json

import multisite as ms
import pytest


def _site(tmp_path, name: str, ids: list[str]) -> object:
    doc = {"folds": [{"train": ids[1:], "val": ids[:1]}, {"train": ids[:1], "val": ids[1:]}], "excluded": ["x"]}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(doc))
    return path


def test_joined_folds_keep_each_sites_held_out_patients(tmp_path) -> None:
    paths = {"BUSI": _site(tmp_path, "a", ["benign (1)", "benign (2)"]), "BUS-BRA": _site(tmp_path, "b", ["bus_1"])}
    doc = ms.joined_splits(paths, 0)
    assert doc["folds"] == [{"train": ["BUSI/benign (2)"], "val": ["BUSI/benign (1)", "BUS-BRA/bus_1"]}]
    assert doc["excluded"] == ["BUSI/x", "BUS-BRA/x"]
    assert ms.joined_splits(paths, 1)["folds"][0]["val"] == ["BUSI/benign (2)"]
    with pytest.raises(ValueError, match="fold 2"):
        ms.joined_splits(paths, 2)


def test_single_run_missing_is_a_clear_error(tmp_path) -> None:
    args = argparse.Namespace(single_project=tmp_path)
    with pytest.raises(FileNotFoundError, match="external.py --recipes baseline --tasks seg --directions busbra"):
        ms.single_run(args, "seg", "BUS-BRA", 0, 0)
    with pytest.raises(FileNotFoundError, match="--tasks cls --directions busi"):
        ms.single_run(args, "cls", "BUSI", 0, 0)


def test_markdown_compares_each_site_on_the_same_images() -> None:
    site = {
        "n": 129, "joint_dice": 0.75, "joint_dice_ci95": [0.7, 0.8], "joint_below_0.5": 0.1,
        "single_dice": 0.726, "single_dice_ci95": [0.68, 0.77], "single_below_0.5": 0.12,
    }  # fmt: skip
    result = {
        "commands": ["python benchmarks/multisite.py"],
        "cpu": {"model": "AMD EPYC", "cores": 2},
        "date": "2026-12-02",
        "protocol": "P.",
        "runs": [{"task": "seg", "fold": 0, "seed": 0, "sites": {"BUSI": site}, "commit": "abc"}],
    }
    text = ms.markdown(result)
    assert "| 0 | 0 | BUSI (129) | 0.750 (0.700-0.800) | 0.726 (0.680-0.770) | +0.024 | 10.0% / 12.0% | abc |" in text
    assert "Classification" not in text


def _metrics(path, **values) -> None:
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps(values))


def test_cls_row_reads_each_sites_auc_and_called_normal(tmp_path) -> None:
    """The two-site classifier's per-site AUC and called-normal share beside each single-site run's, in the table."""
    args = argparse.Namespace(single_project=tmp_path / "single")
    figures = {"malignant_auc_ci95": [0.5, 0.9], "lesion_called_normal_ci95": [0.0, 0.2]}
    per_site = {
        "BUSI": {"n": 156, "malignant_auc": 0.84, "lesion_called_normal": 0.10, **figures},
        "BUS-BRA": {"n": 375, "malignant_auc": 0.80, "lesion_called_normal": 0.02, **figures},
    }
    run = tmp_path / "joint"
    _metrics(run, per_site=per_site, train_cases=2000, best_epoch=9, macro_auc=0.8, macro_auc_ci95=[0.7, 0.9])
    (run / "splits.json").write_text(json.dumps({"dropped": ["BUSI/benign (3)"]}))
    for direction, n, auc, normal in (("busi", 156, 0.86, 0.155), ("busbra", 375, 0.76, 0.0)):
        single = ms.run_dir_of(argparse.Namespace(project=args.single_project), "baseline", "cls", direction, 0, 0)
        _metrics(single, n_images=n, malignant_auc=auc, lesion_called_normal=normal, **figures)
    row = ms.read_row(args, "cls", run, 0, 0)
    assert row["task"] == "cls" and row["dropped"] == ["BUSI/benign (3)"] and row["macro_auc"] == 0.8
    assert row["sites"]["BUS-BRA"]["single_malignant_auc"] == 0.76
    assert row["sites"]["BUSI"]["joint_lesion_called_normal"] == 0.10
    text = ms.markdown({"commands": ["c"], "cpu": {"model": "AMD EPYC", "cores": 2}, "date": "d", "protocol": "P.",
                        "runs": [{**row, "commit": "abc"}]})  # fmt: skip
    assert "| 0 | 0 | BUS-BRA (375) | 0.800 (0.500-0.900) | 0.760 (0.500-0.900) | +0.040 | 2.0% / 0.0% | abc |" in text
    assert "Segmentation" not in text
    per_site["BUSI"]["n"] = 155
    _metrics(tmp_path / "joint2", per_site=per_site, train_cases=1, best_epoch=1, macro_auc=0.8, macro_auc_ci95=[0, 1])
    with pytest.raises(ValueError, match="BUSI: the two-site run held out 155 images, the single-site run 156"):
        ms.read_row(args, "cls", tmp_path / "joint2", 0, 0)
