"""Reading every case: statistics, the OR merge of masks, errors and warnings."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.errors import DataError
from data.discover import discover
from data.report import InspectOptions, analyze_dataset
from data.scan import STATS_COLUMNS, scan
from tests.conftest import disc_mask, save_gray, save_mask, textured


def test_stats_table_has_one_row_per_case_with_documented_columns(make_busi) -> None:
    root = make_busi(per_class=2)
    result = scan(discover(root))
    assert list(result.stats.columns) == list(STATS_COLUMNS)
    assert len(result.stats) == 6 and not result.errors and not result.warnings
    row = result.stats.set_index("id").loc["benign (1)"]
    assert (row.width, row.height, row.channels, row.bit_depth, row["mode"]) == (64, 48, 1, 8, "L")
    assert row.masks_merged == 1 and row.components == 1
    assert row.mean_intensity == pytest.approx(float(textured(3).mean()), abs=1e-3)
    assert row.mask_area_fraction == pytest.approx(disc_mask().mean(), abs=1e-6)
    assert len(row.phash) == 16 and len(row.pixel_hash) == 32


def test_merges_extra_masks_with_or(make_busi) -> None:
    root = make_busi(per_class=1)
    left, right = disc_mask(cx=12, r=6), disc_mask(cx=50, r=6)
    save_mask(root / "benign" / "benign (1)_mask.png", left)
    save_mask(root / "benign" / "benign (1)_mask_1.png", right)
    save_mask(root / "benign" / "benign (1)_mask_2.png", left)  # overlap counts once
    row = scan(discover(root)).stats.set_index("id").loc["benign (1)"]
    assert row.masks_merged == 3
    assert row.components == 2
    assert row.mask_area_fraction == pytest.approx((left | right).mean(), abs=1e-6)


def test_truncated_image_is_an_error_naming_the_file(make_busi) -> None:
    root = make_busi(per_class=2)
    p = root / "malignant" / "malignant (2).png"
    p.write_bytes(p.read_bytes()[:60])
    result = scan(discover(root))
    assert [e.kind for e in result.errors] == ["unreadable_image"]
    assert result.errors[0].path == p and "malignant (2).png" in str(result.errors[0])


def test_unreadable_mask_is_an_error(make_busi) -> None:
    root = make_busi(per_class=1)
    p = root / "benign" / "benign (1)_mask.png"
    p.write_text("not a png")
    result = scan(discover(root))
    assert [e.kind for e in result.errors] == ["unreadable_mask"]
    assert result.errors[0].path == p


def test_mask_size_mismatch_is_an_error(make_busi) -> None:
    root = make_busi(per_class=1)
    p = save_mask(root / "benign" / "benign (1)_mask.png", np.ones((10, 10), bool))
    result = scan(discover(root))
    assert [e.kind for e in result.errors] == ["mask_size_mismatch"]
    assert result.errors[0].path == p and "10x10" in result.errors[0].message


def test_warns_on_empty_lesion_mask(make_busi) -> None:
    root = make_busi(per_class=1)
    save_mask(root / "malignant" / "malignant (1)_mask.png", np.zeros((48, 64), bool))
    warnings = scan(discover(root)).warnings
    assert [(w.kind, w.case_id) for w in warnings] == [("empty_lesion_mask", "malignant (1)")]


def test_warns_on_missing_lesion_mask(make_busi) -> None:
    root = make_busi(per_class=1)
    (root / "benign" / "benign (1)_mask.png").unlink()
    warnings = scan(discover(root)).warnings
    assert [(w.kind, w.case_id) for w in warnings] == [("missing_lesion_mask", "benign (1)")]


def test_warns_on_normal_with_lesion(make_busi) -> None:
    root = make_busi(per_class=1)
    save_mask(root / "normal" / "normal (1)_mask.png", disc_mask())
    warnings = scan(discover(root)).warnings
    assert [(w.kind, w.case_id) for w in warnings] == [("normal_with_lesion", "normal (1)")]


def test_warns_on_non_binary_mask(make_busi) -> None:
    root = make_busi(per_class=1)
    levels = disc_mask().astype(np.uint8) * 200
    levels[0, 0] = 90
    save_gray(root / "benign" / "benign (1)_mask.png", levels)
    warnings = scan(discover(root)).warnings
    assert [w.kind for w in warnings] == ["non_binary_mask"]


def test_classification_only_dataset_has_no_mask_warnings(tmp_path) -> None:
    d = tmp_path / "cls"
    for n, label in enumerate(["normal", "benign", "malignant"]):
        save_gray(d / label / f"{label}.png", textured(n))
    result = scan(discover(d))
    assert not result.warnings and not result.has_masks


def test_strict_turns_warnings_into_errors(make_busi) -> None:
    root = make_busi(per_class=3)
    save_mask(root / "normal" / "normal (1)_mask.png", disc_mask())
    analyze_dataset(root, InspectOptions(folds=2))  # a warning only
    with pytest.raises(DataError, match="under --strict") as err:
        analyze_dataset(root, InspectOptions(folds=2, strict=True))
    assert [p.kind for p in err.value.problems] == ["normal_with_lesion"]


def test_rgb_image_reports_three_channels(make_busi) -> None:
    root = make_busi(per_class=1)
    rgb = np.dstack([textured(3), textured(3), textured(4)])
    Image.fromarray(rgb).save(root / "benign" / "benign (1).png")
    row = scan(discover(root)).stats.set_index("id").loc["benign (1)"]
    assert (row.channels, row["mode"], bool(row.is_gray)) == (3, "RGB", False)
