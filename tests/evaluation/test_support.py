"""What a validation fold must hold for each rule, and where an adapted run's rule is fitted instead."""

from __future__ import annotations

import numpy as np
import pytest

import evaluation.adapted as adapted
from evaluation.adapted import SourceRun, adapted_cut, adapted_gate, adapted_temperature
from evaluation.calibrate import fit_fold_temperature
from evaluation.cut import choose_cut, fit_fold_cut
from evaluation.gate import fit_fold_gate, fit_gate
from evaluation.run_files import load_fitted_gate, save_cut, save_gate, save_temperature
from evaluation.support import (
    OWN,
    POOLED,
    SOURCE,
    Support,
    choose_basis,
    few_cases,
    min_cut_malignant,
    min_gate_lesions,
)
from metrics.calibration import fit_temperature
from reports.stats import wilson_ci
from tests.evaluation.test_gate import _fold


def test_the_counts_are_where_the_wilson_bounds_cross_the_promises() -> None:
    n = min_gate_lesions(0.05)
    assert n == 73 and wilson_ci(0, n)[1] <= 0.05 < wilson_ci(0, n - 1)[1]
    m = min_cut_malignant(0.9)
    assert m == 62 and wilson_ci(0.9 * m, m)[0] >= 0.8 > wilson_ci(0.9 * (m - 1), m - 1)[0]
    assert min_cut_malignant(0.95) < m < min_cut_malignant(0.8)  # a share near 1 is pinned down sooner


def test_the_basis_is_the_fold_then_the_pool_then_the_source() -> None:
    small, big = Support("lesion images", 7, 73), Support("lesion images", 400, 73)
    assert choose_basis(big, None, "src").fitted_on == OWN
    pooled = choose_basis(small, big, "src")
    assert pooled.fitted_on == POOLED and "7 lesion images, 73 needed" in pooled.why() and "400" in pooled.why()
    kept = choose_basis(small, Support("lesion images", 20, 73), "src")
    assert kept.fitted_on == SOURCE and kept.why().endswith("kept src's") and kept.to_dict()["pooled"]["n"] == 20
    assert "not found" in choose_basis(small, None, "src").why()
    assert few_cases(49) and "49 validation cases" in few_cases(49) and few_cases(50) is None


def _predicted(monkeypatch, truths: np.ndarray, probs: np.ndarray) -> None:
    """The source's validation cases 'as the adapted model predicts them', without a model."""
    monkeypatch.setattr(adapted, "predict_records", lambda model, records, cfg, task, tta: (None, truths, [probs]))


def test_a_small_fold_pools_its_gate_with_the_source_and_cross_fits_it(monkeypatch, tmp_path) -> None:
    truths, probs, labels = _fold([0.6, 0.6], [0.9, 0.9, 0.9])
    ids = [f"c{i}" for i in range(5)]
    src_t, src_p, _ = _fold([0.55] * 10, [0.9] * 40 + [0.7] * 40)
    _predicted(monkeypatch, src_t, src_p)
    source = SourceRun(tmp_path, records=["r"] * 90)
    fitted, basis = adapted_gate(None, None, ids, labels, truths, probs, source)
    assert basis.fitted_on == POOLED and basis.own.n == 3 and basis.pooled.n == 83
    assert fitted.gate == fit_gate(np.concatenate([truths, src_t]), np.concatenate([probs, src_p]))
    (first, g0), (second, g1) = fitted.halves
    side0 = np.array([i in first for i in ids])  # half 0 is scored with the gate fitted on half 1 and the source
    assert g0 == fit_gate(np.concatenate([truths[~side0], src_t]), np.concatenate([probs[~side0], src_p]))
    assert set(first) | set(second) == set(ids)
    # A fold big enough fits on itself, as any run does; the source is not even predicted.
    big_t, big_p, big_labels = _fold([0.6] * 5, [0.9] * 80)
    monkeypatch.setattr(adapted, "predict_records", lambda *a: pytest.fail("the source was predicted"))
    big_ids = [f"b{i}" for i in range(85)]
    own, basis = adapted_gate(None, None, big_ids, big_labels, big_t, big_p, source)
    assert basis.fitted_on == OWN and own == fit_fold_gate(big_ids, big_labels, big_t, big_p)


def test_a_gate_the_pool_cannot_support_is_kept_from_the_source(monkeypatch, tmp_path) -> None:
    truths, probs, labels = _fold([0.6], [0.9, 0.9])
    src_t, src_p, src_labels = _fold([0.6] * 3, [0.9] * 20)
    _predicted(monkeypatch, src_t, src_p)
    ids = ["a", "b", "c"]
    with pytest.raises(FileNotFoundError, match="has no lesion gate to keep"):
        adapted_gate(None, None, ids, labels, truths, probs, SourceRun(tmp_path, ["r"] * 23))
    save_gate(tmp_path, fit_fold_gate([f"s{i}" for i in range(23)], src_labels, src_t, src_p))
    kept, basis = adapted_gate(None, None, ids, labels, truths, probs, SourceRun(tmp_path, ["r"] * 23))
    source_gate = load_fitted_gate(tmp_path)
    assert basis.fitted_on == SOURCE and basis.pooled.n == 22 and kept.gate == source_gate.gate
    assert source_gate.halves and kept.halves == ()  # the source's halves name the source's cases: not kept
    gone, basis = adapted_gate(None, None, ids, labels, truths, probs, SourceRun(tmp_path))  # data not found
    assert basis.pooled is None and gone == kept


def _classified(n: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray, list[str], list[str]]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    raw = rng.dirichlet([1, 1, 1], n) * 0.5 + np.eye(3)[labels] * 0.5
    names = [("normal", "benign", "malignant")[k] for k in labels]
    return [f"{seed}-{i}" for i in range(n)], labels, raw, names, [f"g{seed}-{i // 2}" for i in range(n)]


def test_temperature_and_cut_pool_with_the_source_when_the_fold_is_small(monkeypatch, tmp_path) -> None:
    fold = _classified(12, 0)
    _, src_labels, src_raw, src_names, _ = _classified(300, 1)
    monkeypatch.setattr(
        adapted, "predict_records", lambda *a: (None, np.eye(3)[src_labels], [src_raw.astype(np.float32)])
    )
    source = SourceRun(tmp_path, ["r"] * 300)
    fitted, basis, ref = adapted_temperature(None, None, fold, source)
    assert basis.fitted_on == POOLED and basis.pooled.n == 312
    want = fit_temperature(np.concatenate([fold[1], src_labels]), np.concatenate([fold[2], ref["raw"]]))
    assert fitted.temperature == pytest.approx(want)
    names, p_src = adapted.calibrated_source(ref, fitted.temperature)
    ids, _, raw, fold_names, groups = fold
    p = raw[:, 2]
    cut, basis = adapted_cut((ids, fold_names, p, groups), source, lambda: (names, p_src), 0.9)
    assert basis.fitted_on == POOLED and basis.own.needed == 62
    everything = np.concatenate([np.asarray(fold_names), names])
    assert cut.threshold == choose_cut(everything, np.concatenate([p, p_src]), np.ones(len(everything), bool), 0.9)
    # Enough cases of its own: the fold's fits, as any run's.
    big = _classified(400, 2)
    own_t, basis, _ = adapted_temperature(None, None, big, source)
    assert basis.fitted_on == OWN and own_t == fit_fold_temperature(big[0], big[1], big[2], big[3], big[4])
    big_p = big[2][:, 2]
    own_c, basis = adapted_cut((big[0], big[3], big_p, big[4]), source, None, 0.9)
    assert basis.fitted_on == OWN and own_c == fit_fold_cut(big[0], big[3], big_p, big[4], 0.9)
    # Neither enough nor a source's data: the source's saved rules are kept.
    save_temperature(tmp_path, fitted)
    save_cut(tmp_path, cut)
    kept_t, basis, _ = adapted_temperature(None, None, fold, SourceRun(tmp_path))
    assert basis.fitted_on == SOURCE and kept_t.temperature == pytest.approx(fitted.temperature)
    kept_c, basis = adapted_cut((ids, fold_names, p, groups), SourceRun(tmp_path), None, 0.9)
    assert basis.fitted_on == SOURCE and kept_c.threshold == pytest.approx(cut.threshold)
