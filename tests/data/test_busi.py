"""Integration tests on the real BUSI dataset in ../shared (they run in CI)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from data.report import InspectOptions, analyze_dataset, write_report

# One worker analyses BUSI once for the module (the analysis takes about 20 s).
pytestmark = [pytest.mark.busi, pytest.mark.slow, pytest.mark.xdist_group("busi")]


@pytest.fixture(scope="module")
def busi(request, tmp_path_factory):
    busi_dir = request.getfixturevalue("busi_dir")
    t0 = time.perf_counter()
    analysis = analyze_dataset(busi_dir, InspectOptions())
    out = tmp_path_factory.mktemp("busi")
    paths = write_report(analysis, out)
    return analysis, paths, time.perf_counter() - t0


def test_counts_and_merged_masks(busi) -> None:
    analysis, _, seconds = busi
    stats = analysis.scan.stats
    assert stats["label"].value_counts().to_dict() == {
        "benign": 437,
        "malignant": 210,
        "normal": 133,
    }
    assert int(stats["masks_merged"].sum()) == 798
    assert len(stats) == 780
    assert int((stats["masks_merged"] > 1).sum()) == 17  # 16 benign + 1 malignant
    assert seconds < 60


def test_cross_class_exact_duplicate_is_found_and_left_out(busi) -> None:
    analysis, _, _ = busi
    exact_cross = [(p.a, p.b) for p in analysis.pairs if p.exact and p.cross_class]
    assert exact_cross == [("benign (433)", "malignant (145)")]
    assert set(analysis.excluded) == {"benign (433)", "malignant (145)"}
    assert sorted(analysis.splits["excluded"]) == ["benign (433)", "malignant (145)"]


def test_no_near_duplicate_pair_is_split_across_train_and_val(busi) -> None:
    analysis, _, _ = busi
    assert len(analysis.pairs) > 100
    for k, fold in enumerate(analysis.splits["folds"]):
        train, val = set(fold["train"]), set(fold["val"])
        for p in analysis.pairs:
            if {p.a, p.b} & set(analysis.excluded):
                continue
            assert not ({p.a, p.b} & train and {p.a, p.b} & val), (k, p)


def test_every_case_validated_once(busi) -> None:
    analysis, _, _ = busi
    vals = [i for f in analysis.splits["folds"] for i in f["val"]]
    assert len(vals) == len(set(vals)) == 778


def test_stored_modes_match_the_dataset_readme(busi) -> None:
    analysis, paths, _ = busi
    stats = analysis.scan.stats
    assert stats["mode"].value_counts().to_dict() == {"L": 764, "RGB": 16}
    assert Path(paths["stats"]).is_file()
