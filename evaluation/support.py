"""Whether a validation fold can support the rules fitted on it, and what an adapted run fits them on instead.

A run fits three rules on its validation fold: the lesion gate (:mod:`evaluation.gate`), the
temperature (:mod:`evaluation.calibrate`) and the malignancy cut (:mod:`evaluation.cut`). On a small
fold (a run adapted to a new site from a few of its patients, ``train.py --adapt``) their promises
cannot be checked, so each rule states what it needs:

- **the gate** promises to empty at most :data:`~evaluation.gate.MAX_LESION_MISS` of the lesion images
  the model found. With ``n`` such images and none emptied, the upper 95% Wilson bound of the miss rate
  is below that budget only from :func:`min_gate_lesions` images on (73 for 5%);
- **the cut** promises a sensitivity (``--target-sensitivity``). The lower 95% Wilson bound of that
  sensitivity, observed on ``n`` malignant images, is within :data:`CUT_TOLERANCE` of it only from
  :func:`min_cut_malignant` images on (62 for 0.90);
- **the temperature**, one parameter fitted by likelihood, needs :data:`MIN_TEMPERATURE_CASES` cases.

An adapted run fits a rule on its own validation fold when the fold supports it; otherwise on that fold
pooled with its source run's validation fold (as the adapted model predicts it), when the pool supports
it; otherwise it keeps the source run's rule. It says which, and why (:class:`Basis`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from reports.stats import wilson_ci

LEVEL = 0.95
"""Confidence of the Wilson bounds the rules are checked with."""
CUT_TOLERANCE = 0.10
"""How far below the target sensitivity the cut's lower Wilson bound may fall."""
MIN_TEMPERATURE_CASES = 50
"""Validation cases a temperature is fitted on, at least."""
FEW_CASES = 50
"""A run's figures resting on fewer validation cases say so (:func:`few_cases`)."""

OWN, POOLED, SOURCE = "validation fold", "validation fold and the source run's", "source run"
"""Where an adapted run's rule was fitted (:attr:`Basis.fitted_on`)."""


@cache
def min_gate_lesions(budget: float, level: float = LEVEL) -> int:
    """Lesion images needed for a gate that empties none of them to show a miss rate <= ``budget``."""
    n = 1
    while wilson_ci(0, n, level)[1] > budget:
        n += 1
    return n


@cache
def min_cut_malignant(target: float, tolerance: float = CUT_TOLERANCE, level: float = LEVEL) -> int:
    """Malignant images needed for a sensitivity of ``target`` to have its lower Wilson bound within ``tolerance``."""
    n = 1
    while wilson_ci(target * n, n, level)[0] < target - tolerance:  # the bound at exactly the target
        n += 1
    return n


@dataclass(frozen=True)
class Support:
    """What a rule needs and what it had.

    Attributes:
        what: The cases counted, e.g. ``"lesion images the model found"``.
        n: How many there were.
        needed: How many the rule needs.
    """

    what: str
    n: int
    needed: int

    @property
    def ok(self) -> bool:
        """Whether there were enough."""
        return self.n >= self.needed

    def line(self) -> str:
        """E.g. ``"7 lesion images the model found, 73 needed"``."""
        return f"{self.n} {self.what}, {self.needed} needed"


@dataclass(frozen=True)
class Basis:
    """Where an adapted run's rule was fitted and why.

    Attributes:
        fitted_on: :data:`OWN`, :data:`POOLED` or :data:`SOURCE`.
        own: The validation fold's support.
        pooled: The pooled support (None when not tried: the fold sufficed, or the source's data were missing).
        source: The source run's folder.
    """

    fitted_on: str
    own: Support
    pooled: Support | None = None
    source: str = ""

    def why(self) -> str:
        """One sentence: which data, and why."""
        if self.fitted_on == OWN:
            return f"fitted on the validation fold ({self.own.line()})"
        if self.fitted_on == POOLED:
            pooled = self.pooled.line() if self.pooled else ""
            return (
                f"the validation fold is too small ({self.own.line()}): fitted on it pooled with {self.source}'s "
                f"validation fold as this model predicts it ({pooled})"
            )
        too_few = self.pooled.line() if self.pooled else "its validation data not found"
        return f"the validation fold is too small ({self.own.line()}), the pool too ({too_few}): kept {self.source}'s"

    def to_dict(self) -> dict[str, Any]:
        """JSON form, under each rule's report in ``metrics.json``."""
        out: dict[str, Any] = {"fitted_on": self.fitted_on, "why": self.why(), "own": vars(self.own)}
        if self.pooled is not None:
            out["pooled"] = vars(self.pooled)
        return out


def choose_basis(own: Support, pooled: Support | None, source: str) -> Basis:
    """The validation fold when it supports the rule, else the pool when it does, else the source run."""
    if own.ok:
        return Basis(OWN, own)
    if pooled is not None and pooled.ok:
        return Basis(POOLED, own, pooled, source)
    return Basis(SOURCE, own, pooled, source)


def few_cases(n: int, minimum: int = FEW_CASES) -> str | None:
    """The warning a run's metrics and summary line carry when its figures rest on fewer than ``minimum`` cases."""
    if n >= minimum:
        return None
    return f"these figures rest on {n} validation cases (fewer than {minimum}): read their intervals, not the points"
