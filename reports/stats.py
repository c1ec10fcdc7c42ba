"""Confidence intervals: bootstrap over images or over groups (patients), and Wilson's for proportions."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

BREAKDOWN_BOOT = 1000
"""Bootstrap resamples of each site's or scanner's figures (a smaller share of the images each)."""


def bootstrap_ci(
    values: np.ndarray,
    statistic: Callable[[np.ndarray], float] = np.mean,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over the first axis of ``values``.

    Args:
        values: Samples (per-image scores, or rows of paired arrays).
        statistic: Maps a resample to a number.
        n_boot: Number of resamples.
        level: Coverage of the interval.
        seed: Seed of the resampling.

    Returns:
        ``(low, high)``.

    Raises:
        ValueError: If ``values`` is empty or ``level`` is not in (0, 1).
    """
    values = np.asarray(values)
    if len(values) == 0:
        raise ValueError("`values` must not be empty")
    if not 0 < level < 1:
        raise ValueError(f"`level` must be in (0, 1). Received: level={level}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    return percentile_ci(np.array([statistic(values[i]) for i in idx]), level)


def wilson_ci(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n`` (sound at 0% and 100%, unlike the bootstrap).

    Raises:
        ValueError: If ``n`` is not positive, ``successes`` is outside ``0..n`` or ``level`` not in (0, 1).
    """
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1. Received: successes={successes}, n={n}")
    if not 0 < level < 1:
        raise ValueError(f"`level` must be in (0, 1). Received: level={level}")
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + level / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def group_weights(groups: Sequence[object], n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """A cluster bootstrap as weights: row ``b`` says how many times resample ``b`` draws each sample.

    Each resample draws as many groups as there are, with replacement, and every sample counts as
    often as its group was drawn. Images of one patient (or one duplicate group) are not
    independent; resampling them together gives intervals that hold for new patients, not only for
    new images of the same ones. A statistic of a resample is the statistic weighted by its row.

    Args:
        groups: Group of each sample.
        n_boot: Number of resamples.
        seed: Seed of the resampling.

    Returns:
        Array ``(n_boot, len(groups))`` of non-negative integer counts (as float).

    Raises:
        ValueError: If ``groups`` is empty.
    """
    if len(groups) == 0:
        raise ValueError("`groups` must not be empty")
    _, inverse = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)
    n_groups = int(inverse.max()) + 1
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
    offsets = np.arange(n_boot)[:, None] * n_groups
    counts = np.bincount((draws + offsets).ravel(), minlength=n_boot * n_groups).reshape(n_boot, n_groups)
    return counts[:, inverse].astype(float)


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of bootstrap ``samples`` (NaN resamples ignored)."""
    if not 0 < level < 1:
        raise ValueError(f"`level` must be in (0, 1). Received: level={level}")
    alpha = (1 - level) / 2
    return float(np.nanquantile(samples, alpha)), float(np.nanquantile(samples, 1 - alpha))


def group_bootstrap_ci(
    values: np.ndarray, groups: Sequence[object], n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` over a cluster bootstrap (:func:`group_weights`).

    With one sample per group this is :func:`bootstrap_ci`'s interval of the mean in distribution.

    Raises:
        ValueError: If ``values`` is empty, ``groups`` has another length, or ``level`` is not in (0, 1).
    """
    values = np.asarray(values, dtype=float)
    if len(values) == 0 or len(values) != len(groups):
        raise ValueError(f"need as many groups as values; got {len(groups)} groups for {len(values)} values")
    w = group_weights(groups, n_boot, seed)
    return percentile_ci((w @ values) / w.sum(1), level)
