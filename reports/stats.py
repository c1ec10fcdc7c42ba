"""Bootstrap confidence intervals."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


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
    stats = np.array([statistic(values[i]) for i in idx])
    alpha = (1 - level) / 2
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha))


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
