"""Temperature scaling, ECE and Brier score."""

from __future__ import annotations

import numpy as np
import pytest

from metrics.calibration import (
    apply_temperature,
    brier_scores,
    calibration_figures,
    ece_if_calibrated,
    expected_calibration_error,
    fit_temperature,
    reliability_curve,
)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _overconfident(n: int = 3000, sharpen: float = 3.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z), and a model that reports softmax(sharpen * z): over-confident."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.2, (n, 3))
    true = _softmax(z)
    labels = np.array([rng.choice(3, p=p) for p in true])
    return labels, _softmax(sharpen * z)


def test_temperature_scaling_lowers_the_ece_of_an_overconfident_model_and_keeps_the_argmax() -> None:
    labels, probs = _overconfident()
    t = fit_temperature(labels, probs)
    assert t == pytest.approx(3.0, rel=0.15)  # the sharpening it has to undo
    calibrated = apply_temperature(probs, t)
    np.testing.assert_array_equal(calibrated.argmax(1), probs.argmax(1))
    before, after = expected_calibration_error(labels, probs)[0], expected_calibration_error(labels, calibrated)[0]
    assert before > 0.1 and after < 0.03
    assert brier_scores(labels, calibrated).mean() < brier_scores(labels, probs).mean()
    np.testing.assert_allclose(calibrated.sum(1), 1.0)


def test_ece_matches_its_definition_and_takes_bootstrap_weights() -> None:
    labels = np.array([0, 1, 1, 2, 0])
    probs = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [1.0, 0.0, 0.0]])
    # bins of width 1/15: 0.9 and 1.0 land in the top bin (conf 0.95, acc 1), 0.7 alone (acc 1),
    # 0.6 alone (acc 0), 0.8 alone (acc 1).
    expected = (2 * abs(1 - 0.95) + abs(1 - 0.7) + abs(0 - 0.6) + abs(1 - 0.8)) / 5
    assert expected_calibration_error(labels, probs)[0] == pytest.approx(expected)
    w = np.array([[1, 1, 1, 1, 1], [2, 0, 0, 0, 1.0]])
    got = expected_calibration_error(labels, probs, w)
    assert got[0] == pytest.approx(expected) and got[1] == pytest.approx((2 * 0.1 + 0) / 3)
    assert brier_scores(labels[:1], probs[:1])[0] == pytest.approx(0.1**2 + 0.05**2 + 0.05**2)


def test_figures_have_intervals_over_groups_and_curves_skip_empty_bins() -> None:
    labels, probs = _overconfident(n=400, seed=1)
    groups = [f"p{i // 2}" for i in range(400)]
    fig = calibration_figures(labels, probs, groups, n_boot=200)
    assert fig["ece_ci95"][0] <= fig["ece"] <= fig["ece_ci95"][1]
    assert fig["brier_ci95"][0] <= fig["brier"] <= fig["brier_ci95"][1] and fig["nll"] > 0
    curve = reliability_curve(np.array([1.0, 0.0, 1.0]), np.array([0.95, 0.05, 0.99]))
    assert curve == {"predicted": [0.05, 0.97], "observed": [0.0, 1.0], "n": [1, 2]}


def test_temperature_one_is_identity_and_a_bad_temperature_raises() -> None:
    _, probs = _overconfident(n=10)
    np.testing.assert_allclose(apply_temperature(probs, 1.0), probs, atol=1e-12)
    with pytest.raises(ValueError, match="`temperature` must be positive"):
        apply_temperature(probs, 0.0)
    assert fit_temperature(np.array([], int), np.zeros((0, 3))) == 1.0


def test_ece_if_calibrated_is_the_sampling_floor_and_shrinks_with_more_images() -> None:
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(4000, 3)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    few, many = ece_if_calibrated(probs[:150], draws=300), ece_if_calibrated(probs, draws=100)
    assert few["range95"][0] < few["mean"] < few["range95"][1]
    assert many["mean"] < few["mean"] / 3  # the floor falls about as 1/sqrt(n)
    labels = (rng.random((4000, 1)) > np.cumsum(probs, 1)).sum(1)  # labels the probabilities describe exactly
    assert expected_calibration_error(labels, probs)[0] <= many["range95"][1]
    overconfident = apply_temperature(probs, 0.3)  # sharper than the labels deserve
    assert expected_calibration_error(labels, overconfident)[0] > 3 * many["range95"][1]
