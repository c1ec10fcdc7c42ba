"""Several sources as sites: namespaced ids, cross-site duplicates, class+site folds, leave-one-site-out."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from core.errors import DataError
from data.discover import discover
from data.report import InspectOptions, analyze_dataset, dataset_out_dir, format_summary, report_dict
from data.scan import _chroma
from data.sources import Source, dataset_name, discover_sources, parse_sources, partition_by
from data.splits import leave_site_out, validate_splits
from tests.conftest import disc_mask, save_gray, save_mask, textured


def _two_sites(make_busi, per_class: int = 6) -> tuple[Path, Path]:
    """Two BUSI-layout folders whose case ids all collide ("benign (1)" at both), images distinct."""
    return make_busi(per_class=per_class, name="siteA", seed=0), make_busi(per_class=per_class, name="siteB", seed=7)


def test_dataset_name_of_folders_and_manifests(tmp_path: Path) -> None:
    assert dataset_name(tmp_path / "BUS-BRA" / "manifest.csv") == "BUS-BRA"  # a generic manifest: its folder
    assert dataset_name(tmp_path / "site2" / "train.csv") == "train"
    assert dataset_name(tmp_path / "Dataset_BUSI_with_GT") == "Dataset_BUSI_with_GT"


def test_parse_sources_names_and_rejects_twins(tmp_path: Path) -> None:
    a, b = tmp_path / "x" / "manifest.csv", tmp_path / "y" / "manifest.csv"
    assert parse_sources([str(a), f"bra={b}"]) == [Source("x", a), Source("bra", b)]
    with pytest.raises(ValueError, match="both named 'data'.*NAME=PATH"):
        parse_sources([tmp_path / "1" / "data", tmp_path / "2" / "data"])
    with pytest.raises(ValueError, match="at least one"):
        parse_sources([])


def test_colliding_ids_are_namespaced_by_site(make_busi) -> None:
    a, b = _two_sites(make_busi, per_class=2)
    assert set(discover(a)) == set(discover(b))  # every id collides
    cases = discover_sources(parse_sources([str(a), f"second={b}"]))
    assert len(cases) == 12
    one, two = cases["siteA/benign (1)"], cases["second/benign (1)"]
    assert (one.site, two.site) == ("siteA", "second")
    assert one.image != two.image and one.image.parent.parent == a
    # One source keeps its own ids (existing runs and splits stay valid) and gets its name as site.
    single = discover_sources(parse_sources([a]))
    assert "benign (1)" in single and single["benign (1)"].site == "siteA"


def test_problems_of_every_source_are_raised_together(make_busi) -> None:
    a, b = _two_sites(make_busi, per_class=1)
    save_mask(a / "benign" / "orphan_mask.png", disc_mask())
    save_mask(b / "malignant" / "stray_mask.png", disc_mask())
    with pytest.raises(DataError) as err:
        discover_sources(parse_sources([a, b]))
    assert {p.path.name for p in err.value.problems} == {"orphan_mask.png", "stray_mask.png"}


def test_manifest_site_and_device_columns(tmp_path: Path) -> None:
    root = tmp_path / "m"
    for k in range(4):
        save_gray(root / f"i{k}.png", textured(k))
        save_mask(root / f"i{k}_m.png", disc_mask())
    (root / "manifest.csv").write_text(
        "image,label,mask,group,site,device\n"
        "i0.png,benign,i0_m.png,p1,rio,GE Logiq 7\n"
        "i1.png,malignant,i1_m.png,p1,rio,GE Logiq 5\n"
        "i2.png,benign,i2_m.png,p2,sp,\n"
        "i3.png,malignant,i3_m.png,p3,,Toshiba\n"
    )
    cases = discover_sources(parse_sources([root / "manifest.csv"]))
    assert [(c.site, c.device) for c in cases.values()] == [
        ("rio", "GE Logiq 7"),
        ("rio", "GE Logiq 5"),
        ("sp", None),
        ("m", "Toshiba"),  # no site in the row: the source's name
    ]
    records = list(cases.values())
    by_device = partition_by(records, "device")
    assert {k: v.tolist() for k, v in by_device.items()} == {
        "GE Logiq 5": [1],
        "GE Logiq 7": [0],
        "Toshiba": [3],
        "unknown": [2],
    }
    assert set(partition_by(records, "site")) == {"rio", "sp", "m"}
    assert partition_by(records[:2], "site") == {}  # one site: nothing to break down


def test_cross_site_duplicate_stays_in_one_fold(make_busi) -> None:
    a, b = _two_sites(make_busi)
    shutil.copy(a / "malignant" / "malignant (2).png", b / "malignant" / "malignant (9).png")
    shutil.copy(a / "malignant" / "malignant (2)_mask.png", b / "malignant" / "malignant (9)_mask.png")
    analysis = analyze_dataset([a, b], InspectOptions(folds=3))
    pair = ("siteA/malignant (2)", "siteB/malignant (9)")
    assert [(p.a, p.b) for p in analysis.cross_site_pairs] == [pair]
    assert analysis.groups[pair[0]] == analysis.groups[pair[1]]
    for fold in analysis.splits["folds"]:
        assert (pair[0] in fold["val"]) == (pair[1] in fold["val"])
    validate_splits(analysis.splits, analysis.groups)
    report = report_dict(analysis, {})
    assert report["sites"]["siteB"]["malignant"] == 7
    assert len(report["duplicates"]["cross_site"]) == 1
    text = format_summary(analysis)
    assert "Duplicates across sites: 1 pairs" in text and "stratified by class+site" in text
    assert dataset_out_dir([a, b], "runs") == Path("runs/data/siteA+siteB")


def test_folds_are_stratified_by_class_and_site(make_busi) -> None:
    a = make_busi(per_class=6, name="big", seed=0)
    b = make_busi(per_class=3, name="small", seed=5)
    analysis = analyze_dataset([a, b], InspectOptions(folds=3))
    assert analysis.splits["stratify"] == "class+site"
    site_of = analysis.sites
    label_of = {i: c.label for i, c in analysis.cases.items()}
    for fold in analysis.splits["folds"]:
        strata = Counter((site_of[i], label_of[i]) for i in fold["val"])
        # 6 per class at "big" and 3 at "small" over 3 folds: 2 and 1 of each in every validation fold.
        assert all(strata[("big", c)] == 2 for c in ("normal", "benign", "malignant")), strata
        assert all(strata[("small", c)] == 1 for c in ("normal", "benign", "malignant")), strata
    assert analyze_dataset(a, InspectOptions(folds=3)).splits["stratify"] == "class"


def test_leave_one_site_out_drops_duplicates_of_the_held_out_site(make_busi) -> None:
    a, b = _two_sites(make_busi, per_class=3)
    shutil.copy(a / "benign" / "benign (1).png", b / "benign" / "benign (7).png")
    shutil.copy(a / "benign" / "benign (1)_mask.png", b / "benign" / "benign (7)_mask.png")
    analysis = analyze_dataset([a, b], InspectOptions(folds=2))
    doc = leave_site_out(analysis.splits, analysis.sites, analysis.groups, "siteB")
    (fold,) = doc["folds"]
    assert fold["val"] == sorted(i for i in analysis.cases if i.startswith("siteB/"))
    assert doc["dropped"] == ["siteA/benign (1)"]  # the training copy of a held-out image
    assert set(fold["train"]) == {i for i in analysis.cases if i.startswith("siteA/")} - {"siteA/benign (1)"}
    assert doc["holdout_site"] == "siteB" and doc["n_folds"] == 1
    validate_splits(doc, analysis.groups)
    with pytest.raises(ValueError, match=r"one of the sites \['siteA', 'siteB'\]"):
        leave_site_out(analysis.splits, analysis.sites, analysis.groups, "siteC")
    single = analyze_dataset(a, InspectOptions(folds=2))
    with pytest.raises(ValueError, match="at least two sites"):
        leave_site_out(single.splits, single.sites, single.groups, "siteA")


def test_scan_records_acquisition_statistics(tmp_path: Path) -> None:
    from data.scan import scan

    gray = textured(3, 64, 96)
    framed = gray.copy()
    framed[:, :24] = 0  # a black band: background beside the sector
    tinted = np.stack([gray, (gray * 0.8).astype(np.uint8), (gray * 0.5).astype(np.uint8)], axis=-1)
    root = tmp_path / "d"
    save_gray(root / "benign" / "g.png", gray)
    save_gray(root / "benign" / "f.png", framed)
    save_gray(root / "benign" / "t.png", tinted)
    stats = scan(discover(root)).stats.set_index("id")
    assert stats.loc["g", "aspect"] == pytest.approx(1.5)
    assert stats.loc["g", "colour_fraction"] == 0 and stats.loc["t", "colour_fraction"] > 0.8
    assert stats.loc["f", "dark_fraction"] == pytest.approx(0.25 + 0.75 * (gray[:, 24:] < 16).mean(), abs=1e-4)
    assert stats.loc["g", "dark_fraction"] == pytest.approx((gray < 16).mean(), abs=1e-4)
    assert 0 < stats.loc["g", "speckle"] < 1


def test_chroma_equals_the_channel_range_of_every_pixel() -> None:
    rng = np.random.default_rng(0)
    for shape in ((37, 53, 3), (1, 1, 3), (64, 48, 3)):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        expected = image.max(axis=2).astype(np.int16) - image.min(axis=2).astype(np.int16)
        got = _chroma(image)
        assert got.dtype == np.int16
        np.testing.assert_array_equal(got, expected)
