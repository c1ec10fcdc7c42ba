"""The malignancy cut: chosen on the validation fold, and the fold scored with cross-fitted cuts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.classes import CLASS_NAMES
from data.discover import Case
from evaluation.cls import malignancy_cut
from evaluation.cut import YOUDEN_RULE, FittedCut, fit_fold_cut, rule
from evaluation.run_files import THRESHOLD_FILE, load_fitted_cut
from metrics.classification import malignancy_report

# Halves alternate within each class in order: b0, b2 | b1, b3 and m0, m2 | m1, m3.
# Over all eight the classes separate at 0.475 (benign at most 0.45, malignant at least 0.5); the cut chosen
# on the half without b1 (0.4, between 0.3 and 0.5) calls b1 (0.45) malignant.
SCORES = {"b0": 0.1, "b1": 0.45, "b2": 0.3, "b3": 0.2, "m0": 0.5, "m1": 0.9, "m2": 0.7, "m3": 0.6}


def _fold() -> tuple[list[Case], np.ndarray]:
    records = [Case(i, Path(f"{i}.png"), "benign" if i[0] == "b" else "malignant") for i in SCORES]
    probs = np.zeros((len(records), len(CLASS_NAMES)))
    m = CLASS_NAMES.index("malignant")
    probs[:, m] = list(SCORES.values())
    probs[:, CLASS_NAMES.index("benign")] = 1 - probs[:, m]
    return records, probs


def test_each_half_is_scored_with_the_cut_chosen_on_the_other_half(tmp_path) -> None:
    records, probs = _fold()
    names, groups = [r.label for r in records], [r.case_id for r in records]
    fitted = fit_fold_cut(list(SCORES), names, probs[:, 2], groups, target_sensitivity=0)  # Youden's J
    assert fitted.threshold == pytest.approx(0.475) and fitted.rule == YOUDEN_RULE
    assert [set(ids) for ids, _ in fitted.halves] == [{"b0", "b2", "m0", "m2"}, {"b1", "b3", "m1", "m3"}]
    assert [t for _, t in fitted.halves] == pytest.approx([0.525, 0.4])  # each chosen on the other half

    cuts, info = malignancy_cut(records, probs, tmp_path, fit=True, own_data=True, target_sensitivity=0)
    assert info == {"threshold": pytest.approx(0.475), "rule": YOUDEN_RULE, "scored_with": "each half of the "
                    "validation fold with the cut chosen on the other half"}  # fmt: skip
    crossed = malignancy_report(names, probs, CLASS_NAMES, groups, cuts)
    self_scored = malignancy_report(names, probs, CLASS_NAMES, groups, fitted.threshold)
    assert (self_scored["sensitivity"], self_scored["specificity"]) == (1.0, 1.0)  # what the fold said of itself
    assert (crossed["sensitivity"], crossed["specificity"]) == (0.75, 0.75)  # m0 (0.5 < 0.525) and b1 (0.45 >= 0.4)

    # Saved with both halves; evaluate.py on the fold reproduces the figures, another dataset gets the fold's cut.
    assert load_fitted_cut(tmp_path) == fitted and load_fitted_cut(tmp_path).threshold == pytest.approx(0.475)
    again, _ = malignancy_cut(records, probs, tmp_path, fit=False, own_data=True)
    assert np.array_equal(again, cuts)
    other, other_info = malignancy_cut(records, probs, tmp_path, fit=False, own_data=False)
    assert (
        np.all(other == fitted.threshold) and other_info["scored_with"] == "the cut chosen on the run's validation fold"
    )


def test_a_cut_saved_before_cross_fitting_still_loads_and_scores_with_the_folds_cut(tmp_path) -> None:
    doc = {"threshold": 0.3, "score": "P(malignant)"}  # no halves and no rule: the files of before
    (tmp_path / THRESHOLD_FILE).write_text(json.dumps(doc))
    assert load_fitted_cut(tmp_path) == FittedCut(0.3) and load_fitted_cut(tmp_path).rule == YOUDEN_RULE
    records, probs = _fold()
    cuts, info = malignancy_cut(records, probs, tmp_path, fit=False, own_data=True)
    assert np.all(cuts == 0.3) and info["scored_with"] == "the cut chosen on the run's validation fold"
    (tmp_path / THRESHOLD_FILE).write_text('{"cut": 1}')
    with pytest.raises(ValueError, match="does not hold a malignancy cut"):
        load_fitted_cut(tmp_path)


def test_no_cut_without_benign_and_malignant_images() -> None:
    assert fit_fold_cut(["a", "b"], ["benign", "normal"], np.array([0.2, 0.1]), ["a", "b"]) is None
    one_sided = fit_fold_cut(["a", "b", "c"], ["benign", "malignant", "malignant"], np.array([0.2, 0.6, 0.7]),
                             ["a", "b", "c"])  # fmt: skip
    # halves: {a, b} | {c}; the half without a has no benign image, so that half keeps the fold's cut
    assert one_sided.halves[1][1] is not None and one_sided.halves[0][1] is None
    assert one_sided.for_cases(["a", "c"]).tolist() == [one_sided.threshold, one_sided.halves[1][1]]


def test_the_default_cut_keeps_the_target_sensitivity_on_the_fold_and_says_so(tmp_path) -> None:
    records, probs = _fold()
    names, groups = [r.label for r in records], [r.case_id for r in records]
    # 0.75 of the four cancers: the cut may rise to 0.6, midway to 0.5 (the next lower score)
    fitted = fit_fold_cut(list(SCORES), names, probs[:, 2], groups, target_sensitivity=0.75)
    assert fitted.threshold == pytest.approx(0.55)
    # halves chosen on the other half's two cancers: 0.75 needs both (m1 0.9, m3 0.6; m0 0.5, m2 0.7)
    assert [t for _, t in fitted.halves] == pytest.approx([0.525, 0.4])
    cuts, info = malignancy_cut(records, probs, tmp_path, fit=True, own_data=True)  # the default, 0.90
    assert info["rule"] == rule(0.9) and "sensitivity >= 0.90" in info["rule"]
    assert info["threshold"] == pytest.approx(0.475)  # all four cancers at or above it
    saved = json.loads((tmp_path / THRESHOLD_FILE).read_text())
    assert saved["rule"] == rule(0.9) and load_fitted_cut(tmp_path).rule == rule(0.9)
    report = malignancy_report(names, probs, CLASS_NAMES, groups, info["threshold"])
    assert report["sensitivity"] >= 0.9
