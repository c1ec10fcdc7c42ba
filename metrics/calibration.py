"""Calibration of class probabilities: temperature scaling, expected calibration error, Brier score.

Temperature scaling (Guo et al., ICML 2017) divides a classifier's logits by one
number ``T`` fitted on held-out data to minimize the negative log-likelihood. Our
classifiers end in a softmax, so the logits are taken as ``log(p)`` (softmax is
unchanged by the constant a row's logits lose that way): the calibrated
probabilities are ``softmax(log(p) / T)``, which never changes a row's arg-max.

ECE here is the top-label expected calibration error over 15 equal-width bins of
confidence: the mean over images of ``|accuracy - confidence|`` of their bin,
weighted by bin size. Brier is the mean over images of the squared distance
between the probability vector and the one-hot label. Both take bootstrap
weights (:func:`reports.stats.group_weights`), so intervals resample patients.

ECE is biased upwards on few images: even exactly calibrated probabilities show a gap
in every bin from sampling alone. :func:`ece_if_calibrated` measures that floor for the
probabilities at hand (labels drawn from the probabilities themselves), so a reported ECE
can be read against what a perfectly calibrated model would show on as many images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

ECE_BINS = 15
"""Equal-width confidence bins of the expected calibration error."""
TEMPERATURE_RANGE = (0.05, 20.0)
"""Temperatures the fit searches (log-uniformly bounded)."""
_EPS = 1e-7


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(probs) / temperature)`` per row, in float64 (``probs`` ``(N, K)``, rows summing to 1).

    Raises:
        ValueError: If ``temperature`` is not positive.
    """
    if not temperature > 0:
        raise ValueError(f"`temperature` must be positive. Received: {temperature}")
    logits = np.log(np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def nll(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean negative log-likelihood of integer ``labels`` under ``probs``."""
    picked = np.asarray(probs, dtype=np.float64)[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(picked, _EPS, 1.0)).mean())


def fit_temperature(labels: np.ndarray, probs: np.ndarray) -> float:
    """The temperature in :data:`TEMPERATURE_RANGE` that minimizes the NLL of ``labels`` (1.0 with no cases).

    Args:
        labels: Integer class of each case ``(N,)``.
        probs: The model's probabilities ``(N, K)``.
    """
    labels = np.asarray(labels, dtype=int)
    if len(labels) == 0:
        return 1.0
    lo, hi = np.log(TEMPERATURE_RANGE[0]), np.log(TEMPERATURE_RANGE[1])
    fit = minimize_scalar(
        lambda log_t: nll(labels, apply_temperature(probs, float(np.exp(log_t)))),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(fit.x))


def _weights(n: int, weights: np.ndarray | None) -> np.ndarray:
    return np.ones((1, n)) if weights is None else np.atleast_2d(weights)


def expected_calibration_error(
    labels: np.ndarray, probs: np.ndarray, weights: np.ndarray | None = None, bins: int = ECE_BINS
) -> np.ndarray:
    """Top-label ECE over ``bins`` equal-width confidence bins, once per row of ``weights`` ``(B, N)``.

    Returns:
        ``(B,)`` ECEs (``(1,)`` without weights).
    """
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(labels)).astype(float)
    which = np.minimum((confidence * bins).astype(int), bins - 1)  # confidence 1.0 joins the top bin
    member = np.zeros((len(confidence), bins))
    member[np.arange(len(confidence)), which] = 1.0
    w = _weights(len(confidence), weights)
    gaps = w @ (member * (correct - confidence)[:, None])  # (B, bins): summed accuracy - confidence
    return np.abs(gaps).sum(axis=1) / w.sum(axis=1)


def ece_if_calibrated(probs: np.ndarray, draws: int = 500, seed: int = 0, bins: int = ECE_BINS) -> dict[str, Any]:
    """The ECE a perfectly calibrated model with these probabilities would show on as many images.

    Labels are drawn from ``probs`` themselves ``draws`` times; returns the mean ECE and the
    2.5th and 97.5th percentiles over the draws.
    """
    probs = np.asarray(probs, dtype=np.float64)
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(probs, axis=1)
    cumulative[:, -1] = 1.0
    eces = np.empty(draws)
    for d in range(draws):
        labels = (rng.random((len(probs), 1)) > cumulative).sum(axis=1)
        eces[d] = expected_calibration_error(labels, probs, bins=bins)[0]
    return {"mean": float(eces.mean()), "range95": [float(np.percentile(eces, 2.5)), float(np.percentile(eces, 97.5))]}


def brier_scores(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per-case Brier score: squared distance between ``probs`` and the one-hot label, summed over classes."""
    probs = np.asarray(probs, dtype=np.float64)
    onehot = np.eye(probs.shape[1])[np.asarray(labels, dtype=int)]
    return ((probs - onehot) ** 2).sum(axis=1)


def calibration_figures(
    labels: np.ndarray, probs: np.ndarray, groups: Sequence[object], n_boot: int = 2000
) -> dict[str, Any]:
    """ECE and Brier score of ``probs`` with 95% intervals bootstrapped over ``groups`` (patients), the NLL,
    and the ECE exactly calibrated probabilities would show on as many images (:func:`ece_if_calibrated`)."""
    from reports.stats import group_weights, percentile_ci

    w = group_weights(groups, n_boot)
    brier = brier_scores(labels, probs)
    return {
        "ece": float(expected_calibration_error(labels, probs)[0]),
        "ece_ci95": list(percentile_ci(expected_calibration_error(labels, probs, w))),
        "brier": float(brier.mean()),
        "brier_ci95": list(percentile_ci((w @ brier) / w.sum(axis=1))),
        "nll": nll(np.asarray(labels, dtype=int), probs),
        "ece_if_calibrated": ece_if_calibrated(probs),
    }


def reliability_curve(hit: np.ndarray, score: np.ndarray, bins: int = ECE_BINS) -> dict[str, list]:
    """One class's reliability diagram: per non-empty bin of ``score``, its mean score, observed rate and size."""
    which = np.minimum((np.asarray(score) * bins).astype(int), bins - 1)
    out: dict[str, list] = {"predicted": [], "observed": [], "n": []}
    for b in range(bins):
        inside = which == b
        if inside.any():
            out["predicted"].append(float(np.mean(score[inside])))
            out["observed"].append(float(np.mean(hit[inside])))
            out["n"].append(int(inside.sum()))
    return out
