"""Fitting the lesion gate on a validation fold, and scoring the fold with cross-fitted gates."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.gate import FittedGate, apply_gates, fit_fold_gate, fit_gate, gated_dice, halves
from evaluation.run_files import load_fitted_gate, save_gate
from models.postprocess import NO_GATE, LesionGate

SIZE = 16


def _case(lesion: bool, blob_prob: float, blob: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A truth and a map: lesion cases have the blob as their truth; normal cases have an empty truth."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((SIZE, SIZE, 1), np.float32)
    prob = rng.uniform(0, 0.3, (SIZE, SIZE, 1)).astype(np.float32)
    prob[2 : 2 + blob, 3 : 3 + blob] = blob_prob
    if lesion:
        truth[2 : 2 + blob, 3 : 3 + blob] = 1
    return truth, prob


def _fold(normal_probs, lesion_probs) -> tuple[np.ndarray, np.ndarray, list[str]]:
    cases = [_case(False, p, seed=i) for i, p in enumerate(normal_probs)]
    cases += [_case(True, p, seed=100 + i) for i, p in enumerate(lesion_probs)]
    truths, probs = (np.stack(a) for a in zip(*cases, strict=True))
    labels = ["normal"] * len(normal_probs) + ["benign"] * len(lesion_probs)
    return truths, probs, labels


def test_fit_gate_empties_weak_false_lesions_and_keeps_confident_lesions() -> None:
    truths, probs, _ = _fold([0.55, 0.6, 0.62, 0.58], [0.9, 0.95, 0.85, 0.97, 0.92])
    gate = fit_gate(truths, probs)
    assert 0.62 < gate.min_confidence <= 0.85
    present = gate.present_np(probs)
    np.testing.assert_array_equal(present, [False] * 4 + [True] * 5)


def test_fit_gate_keeps_the_lesion_miss_budget() -> None:
    # One lesion is as weak as the normals: emptying the normals would cost it (1 of 5 = 20% > 5%).
    truths, probs, _ = _fold([0.6, 0.6, 0.6], [0.6, 0.9, 0.9, 0.9, 0.9])
    gate = fit_gate(truths, probs, max_lesion_miss=0.05)
    assert gate.present_np(probs)[3]  # the weak lesion is kept
    loose = fit_gate(truths, probs, max_lesion_miss=0.2)
    assert not loose.present_np(probs)[:4].any()  # with 20% allowed, the 3 normals go and the weak lesion with them


def test_fit_gate_without_anything_to_gain_is_no_gate() -> None:
    truths, probs, _ = _fold([], [0.9, 0.8, 0.95])
    assert fit_gate(truths, probs) == NO_GATE


def test_gated_dice_scores_empty_answers() -> None:
    dice = np.array([0.0, 0.8, 0.3])
    has_lesion = np.array([False, True, True])
    np.testing.assert_allclose(gated_dice(dice, has_lesion, np.array([False, False, True])), [1.0, 0.0, 0.3])


def test_halves_alternate_within_each_class() -> None:
    side = halves(["normal", "benign", "normal", "benign", "benign", "normal", "malignant"])
    np.testing.assert_array_equal(side, [0, 0, 1, 1, 0, 0, 0])


def test_each_half_is_scored_with_the_gate_fitted_on_the_other_half() -> None:
    truths, probs, labels = _fold([0.55, 0.6, 0.62, 0.58, 0.57, 0.61], [0.9, 0.95, 0.85, 0.97, 0.92, 0.88])
    ids = [f"c{i}" for i in range(len(labels))]
    fitted = fit_fold_gate(ids, labels, truths, probs)
    side = halves(labels)
    for h in (0, 1):
        other = side != h
        members, gate = fitted.halves[h]
        assert list(members) == [i for i, s in zip(ids, side, strict=True) if s == h]
        assert gate == fit_gate(truths[other], probs[other])
    assert fitted.gate == fit_gate(truths, probs)
    gates = fitted.for_cases([*ids, "external"])
    assert gates[-1] == fitted.gate
    assert all(g == fitted.halves[s][1] for g, s in zip(gates[:-1], side, strict=True))


def test_changing_a_scored_case_never_changes_the_gate_that_scores_it() -> None:
    """The threshold is never fitted on the data it scores: a case's own map does not move its gate."""
    truths, probs, labels = _fold([0.55, 0.6, 0.62, 0.58, 0.57, 0.61], [0.9, 0.95, 0.85, 0.97, 0.92, 0.88])
    ids = [f"c{i}" for i in range(len(labels))]
    before = fit_fold_gate(ids, labels, truths, probs)
    changed = probs.copy()
    changed[0] = np.where(changed[0] >= 0.5, 0.99, changed[0])  # normal case c0 (half 0) now looks confident
    after = fit_fold_gate(ids, labels, truths, changed)
    assert after.for_cases(["c0"]) == before.for_cases(["c0"])
    assert after.halves[1][1] != before.halves[1][1] or after.gate != before.gate  # the others do see it


def test_apply_gates_uses_each_cases_gate() -> None:
    truths, probs, _ = _fold([0.6], [0.9])
    out = apply_gates(probs, [LesionGate(0.0, 0.7), NO_GATE])
    assert not (out[0] >= 0.5).any() and (out[1] == probs[1]).all()


def test_fitted_gate_round_trips_through_its_file(tmp_path) -> None:
    fitted = FittedGate(LesionGate(0.01, 0.7), ((("a", "b"), LesionGate(0.0, 0.6)), (("c",), NO_GATE)))
    save_gate(tmp_path, fitted)
    assert load_fitted_gate(tmp_path) == fitted
    assert load_fitted_gate(tmp_path / "nothing") is None


@pytest.mark.parametrize("budget", [0.0, 0.05])
def test_fit_gate_never_empties_more_lesions_than_the_budget(budget: float) -> None:
    rng = np.random.default_rng(3)
    truths, probs, _ = _fold(rng.uniform(0.5, 0.9, 10), rng.uniform(0.5, 1.0, 40))
    gate = fit_gate(truths, probs, max_lesion_miss=budget)
    lesion_found = (probs[10:] >= 0.5).reshape(40, -1).any(axis=1)
    missed = (lesion_found & ~gate.present_np(probs[10:])).sum()
    assert missed <= int(budget * 40)
