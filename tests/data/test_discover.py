"""Finding cases in the BUSI folder layout and in manifest CSVs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.errors import DataError
from data.discover import discover
from tests.conftest import disc_mask, save_gray, save_mask, textured


def _kinds(err: pytest.ExceptionInfo[DataError]) -> list[str]:
    return [p.kind for p in err.value.problems]


def test_finds_busi_cases_keyed_by_id(make_busi) -> None:
    root = make_busi(per_class=3)
    cases = discover(root)
    assert len(cases) == 9
    c = cases["benign (2)"]
    assert c.case_id == "benign (2)" and c.label == "benign"
    assert c.image == root / "benign" / "benign (2).png"
    assert c.masks == (root / "benign" / "benign (2)_mask.png",)


def test_collects_extra_masks_in_order(make_busi) -> None:
    root = make_busi(per_class=2)
    save_mask(root / "benign" / "benign (1)_mask_2.png", disc_mask(cx=50, r=4))
    save_mask(root / "benign" / "benign (1)_mask_1.png", disc_mask(cx=10, r=4))
    masks = discover(root)["benign (1)"].masks
    assert [m.name for m in masks] == [
        "benign (1)_mask.png",
        "benign (1)_mask_1.png",
        "benign (1)_mask_2.png",
    ]


def test_class_folders_match_case_insensitively(tmp_path: Path) -> None:
    save_gray(tmp_path / "d" / "Benign" / "x.png", textured(1))
    assert discover(tmp_path / "d")["x"].label == "benign"


def test_unknown_class_folder_is_an_error_naming_it(make_busi) -> None:
    root = make_busi(per_class=1)
    save_gray(root / "suspicious" / "s (1).png", textured(9))
    with pytest.raises(DataError, match="suspicious") as err:
        discover(root)
    assert _kinds(err) == ["unknown_class_folder"]


def test_mask_without_image_is_an_error_naming_the_mask(make_busi) -> None:
    root = make_busi(per_class=1)
    save_mask(root / "malignant" / "malignant (7)_mask.png", disc_mask())
    with pytest.raises(DataError, match=r"malignant \(7\)_mask.png") as err:
        discover(root)
    assert _kinds(err) == ["mask_without_image"]


def test_duplicate_ids_across_classes_are_an_error(make_busi) -> None:
    root = make_busi(per_class=1)
    save_gray(root / "benign" / "scan.png", textured(5))
    save_gray(root / "malignant" / "scan.png", textured(6))
    with pytest.raises(DataError, match="scan") as err:
        discover(root)
    assert _kinds(err) == ["duplicate_id"]


def test_same_stem_two_extensions_is_a_duplicate_id(make_busi) -> None:
    root = make_busi(per_class=1)
    save_gray(root / "benign" / "benign (1).jpg", textured(5))
    with pytest.raises(DataError, match=r"benign \(1\)") as err:
        discover(root)
    assert _kinds(err) == ["duplicate_id"]


def test_empty_dataset_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty" / "benign").mkdir(parents=True)
    with pytest.raises(DataError, match="no images") as err:
        discover(tmp_path / "empty")
    assert _kinds(err) == ["empty_dataset"]


def test_pointing_at_a_class_folder_suggests_the_parent(make_busi) -> None:
    root = make_busi(per_class=2)
    with pytest.raises(DataError, match="pass its parent"):
        discover(root / "benign")


def test_missing_data_dir_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        discover(tmp_path / "nowhere")


def test_hidden_and_non_image_files_are_ignored(make_busi) -> None:
    root = make_busi(per_class=1)
    (root / "benign" / ".DS_Store").write_bytes(b"\0")
    (root / "benign" / "notes.txt").write_text("hi")
    (root / "README.txt").write_text("hi")
    assert len(discover(root)) == 3


# --- manifest ------------------------------------------------------------------------


def _manifest_data(tmp_path: Path) -> Path:
    d = tmp_path / "site"
    save_gray(d / "img" / "a.png", textured(1))
    save_gray(d / "img" / "b.jpg", textured(2))
    save_gray(d / "img" / "c.bmp", textured(3))
    save_mask(d / "mask" / "a.png", disc_mask())
    save_mask(d / "mask" / "a2.png", disc_mask(cx=10, r=3))
    return d


def test_reads_manifest_with_relative_paths_masks_and_groups(tmp_path: Path) -> None:
    d = _manifest_data(tmp_path)
    (d / "m.csv").write_text(
        "image,label,mask,group\n"
        "img/a.png,Malignant,mask/a.png; mask/a2.png,p1\n"
        "img/b.jpg,normal,,p1\n"
        "img/c.bmp,benign,,\n"
    )
    cases = discover(d / "m.csv")
    assert list(cases) == ["img/a", "img/b", "img/c"]
    a = cases["img/a"]
    assert a.label == "malignant" and a.group == "p1"
    assert a.masks == ((d / "mask" / "a.png").resolve(), (d / "mask" / "a2.png").resolve())
    assert cases["img/b"].masks == () and cases["img/c"].group is None


def test_manifest_id_column_is_used(tmp_path: Path) -> None:
    d = _manifest_data(tmp_path)
    (d / "m.csv").write_text("id,image,label\ncase-1,img/a.png,benign\n")
    assert list(discover(d / "m.csv")) == ["case-1"]


def test_manifest_missing_file_names_row_and_file(tmp_path: Path) -> None:
    d = _manifest_data(tmp_path)
    (d / "m.csv").write_text("image,label,mask\nimg/a.png,benign,mask/nope.png\nimg/zz.png,benign,\n")
    with pytest.raises(DataError) as err:
        discover(d / "m.csv")
    text = str(err.value)
    assert "row 2" in text and "nope.png" in text and "row 3" in text and "zz.png" in text
    assert _kinds(err) == ["missing_file", "missing_file"]


def test_manifest_unknown_label_is_an_error(tmp_path: Path) -> None:
    d = _manifest_data(tmp_path)
    (d / "m.csv").write_text("image,label\nimg/a.png,cyst\n")
    with pytest.raises(DataError, match="cyst"):
        discover(d / "m.csv")


def test_manifest_missing_column_is_an_error(tmp_path: Path) -> None:
    d = _manifest_data(tmp_path)
    (d / "m.csv").write_text("path,label\nimg/a.png,benign\n")
    with pytest.raises(DataError, match=r"missing \['image'\]"):
        discover(d / "m.csv")


def test_manifest_duplicate_ids_are_an_error(tmp_path: Path) -> None:
    d = _manifest_data(tmp_path)
    (d / "m.csv").write_text("image,label\nimg/a.png,benign\nimg/a.png,benign\n")
    with pytest.raises(DataError, match="already used") as err:
        discover(d / "m.csv")
    assert _kinds(err) == ["duplicate_id"]


def test_manifest_with_no_rows_is_empty_dataset(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("image,label\n")
    with pytest.raises(DataError, match="no rows"):
        discover(tmp_path / "m.csv")


def test_non_csv_file_is_rejected(tmp_path: Path) -> None:
    p = save_gray(tmp_path / "x.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match="folder or a .csv"):
        discover(p)


def test_lesion_images_without_a_mask_are_an_error_for_mask_tasks_naming_every_file(make_busi) -> None:
    from data.discover import check_lesion_masks

    root = make_busi(per_class=3)
    for stem in ("benign (2)", "malignant (3)"):
        (root / stem.split()[0] / f"{stem}_mask.png").unlink()
    cases = list(discover(root).values())
    assert check_lesion_masks(cases, "cls", False, "busi") == (cases, [])  # a classifier needs no mask
    for task in ("seg", "joint"):
        with pytest.raises(DataError, match="2 problems") as err:
            check_lesion_masks(cases, task, False, "busi")
        assert {p.case_id for p in err.value.problems} == {"benign (2)", "malignant (3)"}
        assert all(p.kind == "missing_mask" and p.path.is_file() for p in err.value.problems)
        kept, left = check_lesion_masks(cases, task, True, "busi")
        assert left == ["benign (2)", "malignant (3)"] and len(kept) == len(cases) - 2
    for c in cases:
        for m in c.masks:
            m.unlink()
    no_masks = list(discover(root).values())
    with pytest.raises(ValueError, match=r"^--task seg needs lesion masks and busi has no mask file: .*--task cls$"):
        check_lesion_masks(no_masks, "seg", True, "busi")  # one line, even when leaving images out is allowed
