"""Fit the lesion gate (:mod:`models.postprocess`) on a validation fold, and score with it honestly.

The gate's two thresholds are chosen on the fold's validation predictions to
maximize the mean per-image Dice over all of them (a normal image left empty
scores 1, a lesion image left empty 0), among the thresholds that leave at most
``max_lesion_miss`` of the lesion images that the ungated model found empty.
That gate is saved with the run (``lesion_gate.json``, :mod:`evaluation.run_files`)
and used on any other data.

Scoring the fold with the gate fitted on it would flatter it, so the fold's own
metrics use cross-fitting: the validation cases are split into two halves
(stratified by class), each half is scored with the gate fitted on the other
half, and both halves' gates are saved too, so ``evaluate.py`` on the fold
reproduces the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from metrics.segmentation import per_image_scores
from models.postprocess import NO_GATE, LesionGate, map_statistics

MAX_LESION_MISS = 0.05
"""Largest share of lesion images the gate may empty beyond those the model already left empty."""
_GRID = 24
"""Candidate thresholds per statistic (quantiles of the observed values)."""


def gated_dice(dice: np.ndarray, has_lesion: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Per-image Dice after gating: unchanged where the map is kept, else 1 for an empty truth and 0 otherwise."""
    return np.where(present, dice, np.where(has_lesion, 0.0, 1.0))


def fit_gate(truths: np.ndarray, probs: np.ndarray, max_lesion_miss: float = MAX_LESION_MISS) -> LesionGate:
    """The gate that maximizes mean per-image Dice on ``truths``/``probs`` within the lesion-miss budget.

    Ties go to the smaller thresholds (the gentler gate). With no image the gate would change, or
    nothing to gain, it is :data:`~models.postprocess.NO_GATE`.

    Args:
        truths: Masks ``(N, H, W[, 1])`` of 0/1.
        probs: The model's probability maps, same shape.
        max_lesion_miss: See :data:`MAX_LESION_MISS`.
    """
    n = truths.shape[0]
    has_lesion = truths.reshape(n, -1).max(axis=1) > 0.5
    dice, _ = per_image_scores(truths, probs)
    area, confidence = map_statistics(probs)
    found = area > 0
    budget = int(np.floor(max_lesion_miss * has_lesion.sum()))

    def candidates(values: np.ndarray) -> np.ndarray:  # 0 and quantiles of the maps that have a lesion
        quantiles = np.quantile(values[found], np.linspace(0, 1, _GRID)) if found.any() else []
        return np.unique(np.concatenate([[0.0], quantiles]))

    areas, confs = candidates(area), candidates(confidence)
    best, best_score = NO_GATE, gated_dice(dice, has_lesion, found).mean()
    for a in areas:
        for c in confs:
            present = found & (area >= a) & (confidence >= c)
            if (has_lesion & found & ~present).sum() > budget:
                continue
            score = gated_dice(dice, has_lesion, present).mean()
            if score > best_score + 1e-12:
                best, best_score = LesionGate(float(a), float(c)), score
    return best


def halves(labels: Sequence[str]) -> np.ndarray:
    """Cross-fitting halves, 0 or 1 per case: alternating within each class, in the order given."""
    side = np.zeros(len(labels), dtype=int)
    for label in set(labels):
        idx = [i for i, lbl in enumerate(labels) if lbl == label]
        side[idx[1::2]] = 1
    return side


@dataclass(frozen=True)
class FittedGate:
    """A fold's gate and the cross-fitted gates that score the fold itself.

    Attributes:
        gate: Fitted on every validation case; used on any other data.
        halves: ``(case ids, gate fitted on the other half)`` for the two halves of the fold.
    """

    gate: LesionGate
    halves: tuple[tuple[tuple[str, ...], LesionGate], ...] = ()

    def for_cases(self, ids: Sequence[str]) -> list[LesionGate]:
        """The gate that scores each case: its half's cross-fitted gate, else the fold's gate."""
        by_id = {i: g for members, g in self.halves for i in members}
        return [by_id.get(i, self.gate) for i in ids]

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``lesion_gate.json``)."""
        return {
            "gate": self.gate.to_dict(),
            "rule": "empty unless lesion area >= min_area and mean probability over it >= min_confidence",
            "halves": [{"ids": list(ids), "gate": g.to_dict()} for ids, g in self.halves],
        }


def fit_fold_gate(ids: Sequence[str], labels: Sequence[str], truths: np.ndarray, probs: np.ndarray) -> FittedGate:
    """Fit the fold's gate on all its validation cases, and one per cross-fitting half on the other half."""
    side = halves(labels)
    parts = []
    for h in (0, 1):
        other = side != h
        gate = fit_gate(truths[other], probs[other]) if other.any() else NO_GATE
        parts.append((tuple(i for i, s in zip(ids, side, strict=True) if s == h), gate))
    return FittedGate(fit_gate(truths, probs), tuple(parts))


def apply_gates(probs: np.ndarray, gates: Sequence[LesionGate]) -> np.ndarray:
    """``probs`` with each map passed through its own gate."""
    out = probs.copy()
    for g in set(gates):
        idx = np.array([i for i, x in enumerate(gates) if x == g])
        out[idx] = g.apply_np(probs[idx])
    return out
