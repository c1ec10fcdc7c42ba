"""The label set and class statistics, defined once for every package (no dependencies: data, losses
and models all import it)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

CLASS_NAMES: tuple[str, ...] = ("normal", "benign", "malignant")
"""Class order used everywhere: label index i means ``CLASS_NAMES[i]``."""

LESION_CLASSES: frozenset[str] = frozenset({"benign", "malignant"})
"""Classes whose images are expected to show a lesion (and so a non-empty mask)."""


def normalize_label(label: str) -> str | None:
    """Return the canonical class name for ``label``, or None if it is not a class."""
    name = str(label).strip().lower()
    return name if name in CLASS_NAMES else None


def class_counts(labels: Iterable[str]) -> list[int]:
    """Number of cases of each class, in :data:`CLASS_NAMES` order."""
    c = Counter(labels)
    unknown = set(c) - set(CLASS_NAMES)
    if unknown:
        raise ValueError(f"labels must be in {list(CLASS_NAMES)}. Received: {sorted(unknown)}")
    return [c.get(name, 0) for name in CLASS_NAMES]


def class_weights(labels: Iterable[str]) -> dict[int, float]:
    """Balanced class weights ``n / (k * n_c)`` over the ``k`` classes present.

    A class absent from ``labels`` gets weight 0 (it cannot be weighted up).
    Pass the result to ``model.fit(class_weight=...)``.

    Raises:
        ValueError: If ``labels`` is empty or holds an unknown class.
    """
    counts = class_counts(labels)
    n = sum(counts)
    if n == 0:
        raise ValueError("`labels` must not be empty")
    k = sum(1 for c in counts if c)
    return {i: (n / (k * c) if c else 0.0) for i, c in enumerate(counts)}


def class_frequencies(labels: Iterable[str]) -> list[float]:
    """Share of each class, in :data:`CLASS_NAMES` order."""
    counts = class_counts(labels)
    n = sum(counts)
    if n == 0:
        raise ValueError("`labels` must not be empty")
    return [c / n for c in counts]
