"""Class statistics of a training split: counts, frequencies, balanced weights."""

from __future__ import annotations

import pytest

from core.classes import class_frequencies, class_weights


def test_class_weights_hand_computed() -> None:
    w = class_weights(["normal", "benign", "benign", "benign", "malignant", "malignant"])
    assert w == pytest.approx({0: 2.0, 1: 2 / 3, 2: 1.0})
    assert class_weights(["benign", "malignant"]) == {0: 0.0, 1: 1.0, 2: 1.0}
    with pytest.raises(ValueError, match="empty"):
        class_weights([])


def test_class_frequencies_in_class_order() -> None:
    assert class_frequencies(["benign", "benign", "malignant", "normal"]) == pytest.approx([0.25, 0.5, 0.25])
    with pytest.raises(ValueError, match="unknown|must be in"):
        class_frequencies(["cyst"])
