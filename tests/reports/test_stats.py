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


def test_group_weights_draw_whole_groups() -> None:
    from reports.stats import group_weights

    groups = ["a", "a", "a", "b", "c", "c"]
    w = group_weights(groups, n_boot=500, seed=1)
    assert w.shape == (500, 6)
    assert np.all(w[:, 0] == w[:, 1]) and np.all(w[:, 1] == w[:, 2]) and np.all(w[:, 4] == w[:, 5])
    # Each resample draws 3 groups: the counts of a, b, c sum to 3.
    assert np.all(w[:, 0] + w[:, 3] + w[:, 4] == 3)
    assert abs(w[:, 3].mean() - 1.0) < 0.15  # a group is drawn once on average


def test_group_interval_is_wider_when_images_of_a_patient_agree() -> None:
    from reports.stats import bootstrap_ci, group_bootstrap_ci

    rng = np.random.default_rng(0)
    patient_means = rng.normal(0.7, 0.15, size=20)
    values = np.repeat(patient_means, 10) + rng.normal(0, 0.01, size=200)  # 10 near-identical images each
    groups = np.repeat(np.arange(20), 10)
    naive = bootstrap_ci(values)
    clustered = group_bootstrap_ci(values, groups)
    assert (clustered[1] - clustered[0]) > 2 * (naive[1] - naive[0])
    assert clustered[0] < values.mean() < clustered[1]
    # One image per patient: the same interval as the plain bootstrap, up to resampling noise.
    single = group_bootstrap_ci(patient_means, np.arange(20))
    plain = bootstrap_ci(patient_means)
    assert single == pytest.approx(plain, abs=0.02)
    with pytest.raises(ValueError, match="as many groups"):
        group_bootstrap_ci(values, groups[:5])
