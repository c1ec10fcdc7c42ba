"""Exact and near-duplicate images, and the groups that keep them together.

Exact duplicates decode to the same pixels (:func:`data.imageio.pixel_hash`).
Near-duplicates have perceptual hashes (64-bit DCT pHash) within
:data:`NEAR_DUPLICATE_BITS` bits of each other. The threshold was chosen by
looking at BUSI pairs: see ``docs/duplicates.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.fft import dctn

from core.errors import OptionError

NEAR_DUPLICATE_BITS = 10
"""Default largest pHash Hamming distance (of 64 bits) at which two images are near-duplicates."""


def perceptual_hash(gray: np.ndarray) -> str:
    """Return the 64-bit DCT perceptual hash of a gray image as 16 hex digits.

    The image is area-resized to 32x32, transformed with a 2-D DCT, and the
    8x8 lowest frequencies are compared with their median.
    """
    small = cv2.resize(gray.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA)
    low = dctn(small, type=2, norm="ortho")[:8, :8].ravel()
    bits = low > np.median(low)
    value = 0
    for b in bits:
        value = (value << 1) | int(b)
    return f"{value:016x}"


def hamming_matrix(hashes: list[str]) -> np.ndarray:
    """Pairwise Hamming distances (uint8, n x n) between hex pHashes."""
    ints = np.array([int(h, 16) for h in hashes], dtype=np.uint64)
    as_bytes = ints.view(np.uint8).reshape(len(hashes), 8)
    bits = np.unpackbits(as_bytes, axis=1).astype(np.uint8)
    # Distance = popcount(a xor b) = |a| + |b| - 2 |a & b|, computed with one matmul.
    ones = bits.sum(axis=1).astype(np.int32)
    common = bits.astype(np.int32) @ bits.T.astype(np.int32)
    return (ones[:, None] + ones[None, :] - 2 * common).astype(np.uint8)


@dataclass(frozen=True)
class DuplicatePair:
    """Two cases that are exact or near-duplicates."""

    a: str
    b: str
    distance: int
    exact: bool
    label_a: str
    label_b: str

    @property
    def cross_class(self) -> bool:
        """True when the two copies are filed under different classes."""
        return self.label_a != self.label_b

    def to_dict(self) -> dict[str, object]:
        """Return the pair as a JSON-friendly dict."""
        return {
            "a": self.a,
            "b": self.b,
            "label_a": self.label_a,
            "label_b": self.label_b,
            "phash_distance": self.distance,
            "exact": self.exact,
            "cross_class": self.cross_class,
        }


def find_duplicate_pairs(
    ids: list[str],
    labels: list[str],
    pixel_hashes: list[str],
    phashes: list[str],
    max_bits: int = NEAR_DUPLICATE_BITS,
) -> list[DuplicatePair]:
    """List every pair of cases that are exact or near-duplicates.

    Args:
        ids: Case ids; the other lists are aligned with it.
        labels: Class of each case.
        pixel_hashes: :func:`data.imageio.pixel_hash` of each image.
        phashes: :func:`perceptual_hash` of each image.
        max_bits: Largest pHash distance that still counts as a near-duplicate.

    Returns:
        Pairs sorted by distance, then ids; each pair once, ``a`` before ``b`` in ``ids``.

    Raises:
        ValueError: If the lists differ in length or ``max_bits`` is outside 0..64.
    """
    n = len(ids)
    if not (len(labels) == len(pixel_hashes) == len(phashes) == n):
        raise ValueError("`ids`, `labels`, `pixel_hashes` and `phashes` must have equal lengths")
    if not 0 <= max_bits <= 64:
        raise OptionError(f"`max_bits` must be in 0..64. Received: max_bits={max_bits}")
    if n < 2:
        return []
    dist = hamming_matrix(phashes)
    exact = np.array(pixel_hashes, dtype=object)
    same = exact[:, None] == exact[None, :]
    close = (dist <= max_bits) | same
    ii, jj = np.nonzero(np.triu(close, k=1))
    pairs = [
        DuplicatePair(ids[i], ids[j], int(dist[i, j]), bool(same[i, j]), labels[i], labels[j])
        for i, j in zip(ii.tolist(), jj.tolist(), strict=True)
    ]
    pairs.sort(key=lambda p: (not p.exact, p.distance, p.a, p.b))
    return pairs


def group_cases(
    ids: Iterable[str],
    pairs: Iterable[tuple[str, str]],
    user_groups: Mapping[str, str | None] | None = None,
) -> dict[str, str]:
    """Join cases into groups: connected components of duplicate pairs and user groups.

    Args:
        ids: Every case id.
        pairs: Pairs of ids that must stay together (duplicates).
        user_groups: Optional id -> group name (e.g. patient id); cases sharing a
            name are joined.

    Returns:
        id -> group id, where the group id is the smallest member id (stable).
    """
    ids = list(ids)
    parent = {i: i for i in ids}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    for a, b in pairs:
        union(a, b)
    if user_groups:
        first: dict[str, str] = {}
        for i in ids:
            g = user_groups.get(i)
            if g is None:
                continue
            if g in first:
                union(first[g], i)
            else:
                first[g] = i
    return {i: find(i) for i in ids}
