"""Ensembles: voting, out-of-fold weights, and stacking that never fits on the fold it predicts."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.ensemble import Member, align, combine, soft_vote, stack, weighted_vote


def _member(name: str, seed: int, n: int = 60, folds: int = 3, skill: float = 1.5) -> Member:
    rng = np.random.default_rng(seed)
    labels = np.random.default_rng(0).integers(0, 3, n)  # the same cases for every member
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), labels] += skill
    p = np.exp(logits)
    return Member(name, [f"c{i}" for i in range(n)], labels, p / p.sum(1, keepdims=True), np.arange(n) % folds)


def test_soft_vote_is_the_mean() -> None:
    a, b = _member("a", 1), _member("b", 2)
    np.testing.assert_allclose(soft_vote([a, b]), (a.probs + b.probs) / 2)


def test_align_reorders_and_rejects_other_cases() -> None:
    a, b = _member("a", 1), _member("b", 2)
    order = np.random.default_rng(5).permutation(len(b.ids))
    shuffled = Member("b", [b.ids[i] for i in order], b.labels[order], b.probs[order], b.folds[order])
    aligned = align([a, shuffled])[1]
    np.testing.assert_array_equal(aligned.probs, b.probs)
    other = Member("c", [f"x{i}" for i in range(60)], a.labels, a.probs, a.folds)
    with pytest.raises(ValueError, match="different cases"):
        align([a, other])


def test_weighted_vote_takes_each_folds_weights_from_the_other_folds() -> None:
    good, bad = _member("good", 1, skill=3.0), _member("bad", 2, skill=0.2)
    probs, weights = weighted_vote([good, bad])
    assert set(weights) == {"fold0", "fold1", "fold2"}
    assert all(w["good"] > w["bad"] and w["good"] + w["bad"] == pytest.approx(1) for w in weights.values())
    # Fold 0's weights ignore fold 0: wrecking bad's fold-0 predictions leaves them unchanged.
    wrecked = Member("bad", bad.ids, bad.labels, bad.probs.copy(), bad.folds)
    wrecked.probs[bad.folds == 0] = np.roll(bad.probs[bad.folds == 0], 1, axis=1)
    assert weighted_vote([good, wrecked])[1]["fold0"] == pytest.approx(weights["fold0"])


class _Spy:
    """Records what the stacker is fitted on; predicts the training class frequencies."""

    fitted: list[np.ndarray] = []

    def fit(self, x, y):
        _Spy.fitted.append(x.copy())
        self.classes_ = np.unique(y)
        self.freq = np.bincount(y, minlength=3)[self.classes_] / len(y)
        return self

    def predict_proba(self, x):
        return np.tile(self.freq, (len(x), 1))


def test_stacker_never_sees_the_fold_it_predicts() -> None:
    members = [_member("a", 1), _member("b", 2)]
    _Spy.fitted = []
    stack(members, make_stacker=_Spy)
    x = np.concatenate([m.probs for m in members], axis=1)
    assert len(_Spy.fitted) == 3
    for k, rows in enumerate(_Spy.fitted):
        held_out = {tuple(r) for r in x[members[0].folds == k]}
        assert not held_out & {tuple(r) for r in rows}
        assert len(rows) == int((members[0].folds != k).sum())


def test_stack_predictions_do_not_depend_on_the_labels_they_are_scored_on() -> None:
    members = [_member("a", 1), _member("b", 2), _member("c", 3)]
    base = stack(members)
    relabeled = []
    for m in members:  # change fold 1's labels only
        y = m.labels.copy()
        y[m.folds == 1] = (y[m.folds == 1] + 1) % 3
        relabeled.append(Member(m.name, m.ids, y, m.probs, m.folds))
    again = stack(relabeled)
    np.testing.assert_allclose(again[members[0].folds == 1], base[members[0].folds == 1])
    assert not np.allclose(again[members[0].folds == 0], base[members[0].folds == 0])
    assert np.allclose(base.sum(1), 1)


def test_stack_needs_cross_validation_runs() -> None:
    one_fold = [_member("a", 1, folds=1), _member("b", 2, folds=1)]
    with pytest.raises(ValueError, match="--fold all"):
        combine(one_fold, "stack")
    with pytest.raises(ValueError, match="method"):
        combine(one_fold, "boost")
