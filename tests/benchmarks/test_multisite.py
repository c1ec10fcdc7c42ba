"""multisite.py: the two-site folds joined from each site's own, and the section it writes."""

from __future__ import annotations

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
    args = __import__("argparse").Namespace(single_project=tmp_path)
    with pytest.raises(FileNotFoundError, match="external.py --recipes baseline --tasks seg --directions busbra"):
        ms.single_run(args, "BUS-BRA", 0, 0)


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
        "runs": [{"fold": 0, "seed": 0, "sites": {"BUSI": site}, "commit": "abc"}],
    }
    text = ms.markdown(result)
    assert "| 0 | 0 | BUSI (129) | 0.750 (0.700-0.800) | 0.726 (0.680-0.770) | +0.024 | 10.0% / 12.0% | abc |" in text
