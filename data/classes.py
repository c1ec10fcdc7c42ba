"""The label set, defined once for every package of the project."""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = ("normal", "benign", "malignant")
"""Class order used everywhere: label index i means ``CLASS_NAMES[i]``."""

LESION_CLASSES: frozenset[str] = frozenset({"benign", "malignant"})
"""Classes whose images are expected to show a lesion (and so a non-empty mask)."""


def label_index(label: str) -> int:
    """Return the index of ``label`` in :data:`CLASS_NAMES`.

    Args:
        label: A class name, case-insensitive, surrounding spaces ignored.

    Returns:
        The position of the class in :data:`CLASS_NAMES`.

    Raises:
        ValueError: If ``label`` is not one of the class names.
    """
    name = normalize_label(label)
    if name is None:
        raise ValueError(f"`label` must be one of {list(CLASS_NAMES)}. Received: label={label!r}")
    return CLASS_NAMES.index(name)


def normalize_label(label: str) -> str | None:
    """Return the canonical class name for ``label``, or None if it is not a class."""
    name = str(label).strip().lower()
    return name if name in CLASS_NAMES else None
