"""The label set, defined once for every package of the project."""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = ("normal", "benign", "malignant")
"""Class order used everywhere: label index i means ``CLASS_NAMES[i]``."""

LESION_CLASSES: frozenset[str] = frozenset({"benign", "malignant"})
"""Classes whose images are expected to show a lesion (and so a non-empty mask)."""


def normalize_label(label: str) -> str | None:
    """Return the canonical class name for ``label``, or None if it is not a class."""
    name = str(label).strip().lower()
    return name if name in CLASS_NAMES else None
