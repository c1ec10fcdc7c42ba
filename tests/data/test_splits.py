"""Grouped stratified folds: determinism, no leakage, validation of user splits."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from core.errors import DataError
from data.report import InspectOptions, analyze_dataset
from data.splits import drop_grouped_with_val, fold_ids, load_splits, make_splits, validate_splits
from tests.conftest import save_gray, save_mask, textured


@pytest.fixture
def toy() -> tuple[list[str], list[str], list[str]]:
    """60 cases in 3 classes; every third pair of cases shares a group."""
    ids = [f"c{i:02d}" for i in range(60)]
    labels = [("normal", "benign", "malignant")[i % 3] for i in range(60)]
    groups = [f"g{i // 2}" if i % 6 < 2 else f"s{i}" for i in range(60)]
    return ids, labels, groups


def test_split_keeps_duplicates_together(toy) -> None:
    ids, labels, groups = toy
    doc = make_splits(ids, labels, groups, n_folds=5, seed=0)
    group_of = dict(zip(ids, groups, strict=True))
    validate_splits(doc, group_of)
    for f in doc["folds"]:
        assert not set(f["train"]) & set(f["val"])
        assert not {group_of[i] for i in f["train"]} & {group_of[i] for i in f["val"]}
    vals = [i for f in doc["folds"] for i in f["val"]]
    assert sorted(vals) == sorted(ids)  # each case validated exactly once


def test_folds_are_stratified(toy) -> None:
    ids, labels, groups = toy
    doc = make_splits(ids, labels, groups, n_folds=4, seed=0)
    label_of = dict(zip(ids, labels, strict=True))
    for f in doc["folds"]:
        counts = Counter(label_of[i] for i in f["val"])
        assert max(counts.values()) - min(counts.values()) <= 2


def test_split_is_deterministic_for_a_seed(toy) -> None:
    ids, labels, groups = toy
    a = make_splits(ids, labels, groups, seed=3)
    b = make_splits(ids, labels, groups, seed=3)
    c = make_splits(ids, labels, groups, seed=4)
    assert a == b
    assert a["folds"] != c["folds"]


def test_test_fraction_holds_out_whole_groups(toy) -> None:
    ids, labels, groups = toy
    doc = make_splits(ids, labels, groups, n_folds=3, seed=0, test_fraction=0.2)
    group_of = dict(zip(ids, groups, strict=True))
    test = set(doc["test"])
    assert 8 <= len(test) <= 16
    for f in doc["folds"]:
        assert not test & (set(f["train"]) | set(f["val"]))
    validate_splits(doc, group_of)


def test_excluded_ids_are_in_no_fold(toy) -> None:
    ids, labels, groups = toy
    doc = make_splits(ids, labels, groups, excluded=["c05", "c07"])
    assert doc["excluded"] == ["c05", "c07"]
    used = {i for f in doc["folds"] for i in f["train"] + f["val"]}
    assert not used & {"c05", "c07"}


def test_too_few_groups_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="at least 5 independent groups"):
        make_splits(["a", "b", "c"], ["benign"] * 3, ["g", "g", "h"], n_folds=5)


def test_validate_rejects_id_in_train_and_val() -> None:
    doc = {"folds": [{"train": ["a", "b"], "val": ["b"]}], "test": []}
    with pytest.raises(DataError, match="both train and val"):
        validate_splits(doc, {"a": "a", "b": "b"})


def test_validate_rejects_group_split_across_train_and_val() -> None:
    doc = {"folds": [{"train": ["a"], "val": ["b"]}], "test": []}
    with pytest.raises(DataError, match="split between train"):
        validate_splits(doc, {"a": "g", "b": "g"})


def test_drop_grouped_with_val_leaves_out_training_members_of_held_out_groups() -> None:
    groups = {"A/1": "g", "A/2": "A/2", "B/1": "g", "B/2": "B/2", "B/3": "h", "A/3": "h"}
    doc = {
        "folds": [{"train": ["A/1", "A/2", "B/3"], "val": ["B/1", "B/2"]}, {"train": ["B/1", "A/3"], "val": ["B/3"]}]
    }
    out = drop_grouped_with_val(doc, groups)
    assert out["folds"] == [{"train": ["A/2", "B/3"], "val": ["B/1", "B/2"]}, {"train": ["B/1"], "val": ["B/3"]}]
    assert out["dropped"] == ["A/1", "A/3"]
    assert out["n_folds"] == 2
    validate_splits(out, groups)  # the joined folds no longer leak
    with pytest.raises(DataError, match="split between train"):
        validate_splits(doc, groups)


def test_validate_rejects_unknown_ids() -> None:
    doc = {"folds": [{"train": ["a"], "val": ["zz"]}], "test": []}
    with pytest.raises(DataError, match="not in the dataset"):
        validate_splits(doc, {"a": "a"})


def test_fold_out_of_range_raises() -> None:
    doc = {"folds": [{"train": ["a"], "val": ["b"]}]}
    assert fold_ids(doc, 0) == (["a"], ["b"])
    with pytest.raises(ValueError, match=r"`fold` must be in 0..0. Received: fold=1"):
        fold_ids(doc, 1)


def test_load_accepts_nnunet_style_list(tmp_path: Path) -> None:
    p = tmp_path / "s.json"
    p.write_text(json.dumps([{"train": ["a"], "val": ["b"]}]))
    assert load_splits(p)["folds"] == [{"train": ["a"], "val": ["b"]}]
    p.write_text("{broken")
    with pytest.raises(DataError, match="not valid JSON"):
        load_splits(p)


# --- through analyze_dataset: written once, reused, user files validated ----------------


def _dataset_with_duplicates(root: Path) -> Path:
    for n in range(1, 9):
        for k, label in enumerate(("normal", "benign", "malignant")):
            img = textured(100 * k + n)
            save_gray(root / label / f"{label} ({n}).png", img)
            save_mask(root / label / f"{label} ({n})_mask.png", img > (255 if label == "normal" else 200))
    # benign (9) is benign (1) with a caliper-like mark: a near-duplicate.
    img = textured(101)
    img[5:7, 5:15] = 255
    save_gray(root / "benign" / "benign (9).png", img)
    save_mask(root / "benign" / "benign (9)_mask.png", img > 200)
    return root


def test_analysis_groups_near_duplicates_across_folds(tmp_path: Path) -> None:
    root = _dataset_with_duplicates(tmp_path / "d")
    a = analyze_dataset(root, InspectOptions(folds=3))
    assert a.groups["benign (1)"] == a.groups["benign (9)"]
    for f in a.splits["folds"]:
        both = {"benign (1)", "benign (9)"}
        assert both <= set(f["train"]) or both <= set(f["val"])


def test_existing_splits_are_reused_and_mismatch_raises(tmp_path: Path) -> None:
    root = _dataset_with_duplicates(tmp_path / "d")
    p = tmp_path / "splits.json"
    first = analyze_dataset(root, InspectOptions(folds=3, seed=1), existing_splits=p)
    p.write_text(json.dumps(first.splits))
    again = analyze_dataset(root, InspectOptions(folds=3, seed=1), existing_splits=p)
    assert again.splits == first.splits and again.splits_source.startswith("reused")
    with pytest.raises(DataError, match="seed: file has 1, asked 2"):
        analyze_dataset(root, InspectOptions(folds=3, seed=2), existing_splits=p)


def test_stale_splits_after_new_cases_raise(tmp_path: Path) -> None:
    root = _dataset_with_duplicates(tmp_path / "d")
    p = tmp_path / "splits.json"
    p.write_text(json.dumps(analyze_dataset(root, InspectOptions(folds=3)).splits))
    save_gray(root / "normal" / "normal (99).png", textured(999))
    with pytest.raises(DataError, match="in no fold"):
        analyze_dataset(root, InspectOptions(folds=3), existing_splits=p)


def test_user_splits_that_split_a_duplicate_group_raise(tmp_path: Path) -> None:
    root = _dataset_with_duplicates(tmp_path / "d")
    user = tmp_path / "mine.json"
    user.write_text(json.dumps([{"train": ["benign (1)"], "val": ["benign (9)"]}]))
    with pytest.raises(DataError, match="split between train"):
        analyze_dataset(root, InspectOptions(folds=3), splits_file=user)
    user.write_text(json.dumps([{"train": ["benign (1)", "benign (9)"], "val": ["normal (1)"]}]))
    a = analyze_dataset(root, InspectOptions(folds=3), splits_file=user)
    assert a.splits["folds"][0]["val"] == ["normal (1)"]
