"""Fit a classifier's temperature on its validation fold, and score the fold with it honestly.

The temperature (:func:`metrics.calibration.fit_temperature`) fitted on all the
fold's validation cases is saved with the run (``temperature.json``, :mod:`evaluation.run_files`) and applied
wherever the run predicts: ``evaluate.py`` on other data, ``predict.py`` and the
exported SavedModel. Scoring the fold with a temperature fitted on it would
flatter its calibration, so the fold's own figures use cross-fitting, as the
lesion gate does (:mod:`evaluation.gate`): the validation cases are split into
two halves, whole patients (groups) at a time and alternating within each
class, each half is scored with the temperature fitted on the other, and both
are saved so that ``evaluate.py`` on the fold reproduces the figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from metrics.calibration import fit_temperature


def group_halves(labels: Sequence[str], groups: Sequence[str]) -> np.ndarray:
    """Cross-fitting halves, 0 or 1 per case: whole groups, alternating within each class in order of appearance.

    A group's class is that of its first case.
    """
    side_of: dict[str, int] = {}
    seen: dict[str, int] = {}
    for label, group in zip(labels, groups, strict=True):
        if group not in side_of:
            side_of[group] = seen.get(label, 0) % 2
            seen[label] = seen.get(label, 0) + 1
    return np.array([side_of[g] for g in groups], dtype=int)


@dataclass(frozen=True)
class FittedTemperature:
    """A fold's temperature and the cross-fitted ones that score the fold itself.

    Attributes:
        temperature: Fitted on every validation case; used on any other data and in exports.
        halves: ``(case ids, temperature fitted on the other half)`` for the two halves of the fold.
    """

    temperature: float
    halves: tuple[tuple[tuple[str, ...], float], ...] = ()

    def for_cases(self, ids: Sequence[str]) -> np.ndarray:
        """The temperature that scores each case: its half's cross-fitted one, else the fold's."""
        by_id = {i: t for members, t in self.halves for i in members}
        return np.array([by_id.get(i, self.temperature) for i in ids], dtype=float)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``temperature.json``)."""
        return {
            "temperature": self.temperature,
            "rule": "probabilities = softmax(log(p) / temperature)",
            "halves": [{"ids": list(ids), "temperature": t} for ids, t in self.halves],
        }


def fit_fold_temperature(
    ids: Sequence[str], labels: np.ndarray, probs: np.ndarray, class_labels: Sequence[str], groups: Sequence[str]
) -> FittedTemperature:
    """Fit the fold's temperature on all its validation cases, and one per cross-fitting half on the other half.

    Args:
        ids: Case ids.
        labels: Integer class of each case.
        probs: The model's probabilities ``(N, K)``.
        class_labels: Class name of each case (the halves alternate within each).
        groups: Patient (or duplicate group) of each case.
    """
    side = group_halves(class_labels, groups)
    parts = []
    for h in (0, 1):
        other = side != h
        t = fit_temperature(labels[other], probs[other]) if other.any() else 1.0
        parts.append((tuple(i for i, s in zip(ids, side, strict=True) if s == h), t))
    return FittedTemperature(fit_temperature(labels, probs), tuple(parts))
