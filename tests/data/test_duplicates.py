"""Exact and near-duplicate detection and grouping."""

from __future__ import annotations

import cv2
import numpy as np

from data.duplicates import (
    NEAR_DUPLICATE_BITS,
    find_duplicate_pairs,
    group_cases,
    hamming_matrix,
    perceptual_hash,
)
from data.imageio import pixel_hash
from tests.conftest import textured


def test_hamming_matrix_hand_computed() -> None:
    d = hamming_matrix(["0000000000000000", "000000000000000f", "ffffffffffffffff"])
    np.testing.assert_array_equal(d, [[0, 4, 64], [4, 0, 60], [64, 60, 0]])


def test_phash_survives_calipers_and_brightness_but_separates_distinct_images() -> None:
    base = textured(7, 120, 160)
    marked = base.copy()
    cv2.drawMarker(marked, (40, 60), 255, cv2.MARKER_CROSS, 9, 1)
    cv2.drawMarker(marked, (120, 60), 255, cv2.MARKER_CROSS, 9, 1)
    brighter = np.clip(base.astype(int) + 6, 0, 255).astype(np.uint8)
    h = [perceptual_hash(x.astype(np.float32)) for x in (base, marked, brighter)]
    d = hamming_matrix(h)
    assert d[0, 1] <= NEAR_DUPLICATE_BITS and d[0, 2] <= NEAR_DUPLICATE_BITS
    others = [perceptual_hash(textured(100 + k, 120, 160).astype(np.float32)) for k in range(30)]
    dd = hamming_matrix(others)
    assert dd[np.triu_indices(30, 1)].min() > NEAR_DUPLICATE_BITS


def test_finds_exact_and_near_pairs_and_flags_cross_class() -> None:
    a = textured(1)
    ids = ["a", "a_copy", "a_marked", "b"]
    labels = ["benign", "malignant", "benign", "normal"]
    marked = a.copy()
    marked[10:12, 10:20] = 255
    images = [a, a.copy(), marked, textured(2)]
    pairs = find_duplicate_pairs(
        ids,
        labels,
        [pixel_hash(x[:, :, None]) for x in images],
        [perceptual_hash(x.astype(np.float32)) for x in images],
    )
    got = {(p.a, p.b): (p.exact, p.cross_class) for p in pairs}
    assert got[("a", "a_copy")] == (True, True)
    assert got[("a", "a_marked")] == (False, False)
    assert got[("a_copy", "a_marked")] == (False, True)
    assert not any("b" in (p.a, p.b) for p in pairs)


def test_groups_are_transitive_and_join_user_groups() -> None:
    g = group_cases(
        ["a", "b", "c", "d", "e", "f"],
        [("a", "b"), ("b", "c")],
        {"d": "patient-1", "f": "patient-1", "e": None},
    )
    assert g["a"] == g["b"] == g["c"] == "a"
    assert g["d"] == g["f"] == "d"
    assert len({g["a"], g["d"], g["e"]}) == 3
