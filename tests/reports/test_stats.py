"""Confidence intervals: the bootstrap and Wilson's interval of a proportion."""

from __future__ import annotations

import numpy as np
import pytest

from reports.stats import bootstrap_ci, wilson_ci


def test_wilson_matches_published_values() -> None:
    # Newcombe (1998), Table I: 81/263 -> 0.2553-0.3662; 15/148 -> 0.0624-0.1605.
    assert wilson_ci(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-5)
    assert wilson_ci(15, 148) == pytest.approx((0.0624, 0.1605), abs=5e-5)


def test_wilson_stays_informative_at_0_and_100_percent() -> None:
    lo, hi = wilson_ci(27, 27)
    assert hi == pytest.approx(1.0) and 0.85 < lo < 0.9  # the bootstrap would say [1, 1]
    assert bootstrap_ci(np.ones(27)) == (1.0, 1.0)
    lo, hi = wilson_ci(0, 27)
    assert lo == 0.0 and 0.1 < hi < 0.15


@pytest.mark.parametrize("k,n,level", [(-1, 5, 0.95), (6, 5, 0.95), (0, 0, 0.95), (1, 5, 1.0)])
def test_wilson_rejects_impossible_counts(k: int, n: int, level: float) -> None:
    with pytest.raises(ValueError):
        wilson_ci(k, n, level)
