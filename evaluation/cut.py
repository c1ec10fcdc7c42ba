"""Choose the malignancy cut on P(malignant) on a validation fold, and score the fold with it honestly.

The cut is set for sensitivity, as a biopsy threshold is: the highest cut at which at least
``--target-sensitivity`` (default :data:`TARGET_SENSITIVITY`) of the fold's malignant images score at or
above it (:func:`metrics.classification.sensitivity_threshold`; 0 chooses Youden's J over the benign
and malignant images instead, :func:`metrics.classification.youden_threshold`). Chosen on all the fold's
lesion images, it is saved
with the run (``malignancy_threshold.json``, :mod:`evaluation.run_files`) and used on any other
data. Reporting the fold's sensitivity and specificity at a cut chosen on the same images would
flatter them, so the fold's own figures are cross-fitted, exactly as the lesion gate's
(:mod:`evaluation.gate`) and the temperature's (:mod:`evaluation.calibrate`): the same two
halves (whole patients, alternating within each class, :func:`evaluation.calibrate.group_halves`),
each scored with the cut chosen on the other half; both halves' cuts are saved so that
``evaluate.py`` on the fold reproduces training's figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from config.train import TARGET_SENSITIVITY
from evaluation.calibrate import group_halves
from metrics.classification import sensitivity_threshold, youden_threshold

YOUDEN_RULE = "Youden's J on the validation fold's lesion images"


def rule(target_sensitivity: float) -> str:
    """How the cut is chosen, as saved with it: for ``target_sensitivity``, or Youden's J when it is 0."""
    if target_sensitivity == 0:
        return YOUDEN_RULE
    return f"the highest cut with sensitivity >= {target_sensitivity:.2f} on the validation fold's malignant images"


@dataclass(frozen=True)
class FittedCut:
    """A fold's cut on P(malignant) and the cross-fitted cuts that score the fold itself.

    Attributes:
        threshold: Chosen on every lesion image of the fold; used on any other data.
        halves: ``(case ids, cut chosen on the other half)`` for the two halves of the fold; the cut is
            None where the other half lacks benign or malignant images (that half is then scored with
            ``threshold``, and the run says so).
        rule: How the cuts were chosen (:func:`rule`; files saved before the rule was a choice: Youden's J).
    """

    threshold: float
    halves: tuple[tuple[tuple[str, ...], float | None], ...] = ()
    rule: str = YOUDEN_RULE

    def for_cases(self, ids: Sequence[str]) -> np.ndarray:
        """The cut that scores each case: its half's cross-fitted one, else the fold's."""
        by_id = {i: t for members, t in self.halves for i in members if t is not None}
        return np.array([by_id.get(i, self.threshold) for i in ids], dtype=float)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``malignancy_threshold.json``)."""
        return {
            "threshold": self.threshold,
            "score": "P(malignant)",
            "rule": self.rule,
            "halves": [{"ids": list(ids), "threshold": t} for ids, t in self.halves],
        }


def choose_cut(names: np.ndarray, p_malignant: np.ndarray, member: np.ndarray, target: float) -> float | None:
    """The cut on the benign and malignant images among ``member`` (:func:`rule`); None without both."""
    keep = member & np.isin(names, ["benign", "malignant"])
    y = names[keep] == "malignant"
    if not y.any() or y.all():
        return None
    scores = p_malignant[keep]
    return youden_threshold(y, scores) if target == 0 else sensitivity_threshold(y, scores, target)


def fit_fold_cut(
    ids: Sequence[str],
    names: Sequence[str],
    p_malignant: np.ndarray,
    groups: Sequence[str],
    target_sensitivity: float = TARGET_SENSITIVITY,
) -> FittedCut | None:
    """Choose the fold's cut on all its lesion images, and one per cross-fitting half on the other half.

    Args:
        ids: Case ids.
        names: Class name of each case (normal images take no part in the cut).
        p_malignant: P(malignant) of each case.
        groups: Patient (or duplicate group) of each case.
        target_sensitivity: The sensitivity the cut keeps on the images it is chosen on (0: Youden's J).

    Returns:
        None when the fold lacks benign or malignant images.
    """
    names_arr = np.asarray(names)
    fold_cut = choose_cut(names_arr, p_malignant, np.ones(len(names_arr), dtype=bool), target_sensitivity)
    if fold_cut is None:
        return None
    side = group_halves(list(names), list(groups))
    parts = []
    for h in (0, 1):
        members = tuple(i for i, s in zip(ids, side, strict=True) if s == h)
        parts.append((members, choose_cut(names_arr, p_malignant, side != h, target_sensitivity)))
    return FittedCut(fold_cut, tuple(parts), rule(target_sensitivity))
