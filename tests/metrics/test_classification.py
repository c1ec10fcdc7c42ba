"""Classification report against scikit-learn; bootstrap interval behaviour."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

from metrics.classification import classification_report, format_report

NAMES = ["normal", "benign", "malignant"]


def _fixed(n: int, seed: int = 0, signal: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), y] += signal
    p = np.exp(logits)
    return y, p / p.sum(1, keepdims=True)


def test_point_estimates_match_scikit_learn() -> None:
    y, p = _fixed(120)
    pred = p.argmax(1)
    r = classification_report(y, p, NAMES)
    assert r["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert r["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert r["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert r["macro_auc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert r["confusion"] == confusion_matrix(y, pred).tolist()
    prec, rec, f1, support = precision_recall_fscore_support(y, pred)
    for c, name in enumerate(NAMES):
        e = r["per_class"][name]
        got = (e["precision"], e["recall"], e["f1"], e["support"])
        assert got == pytest.approx((prec[c], rec[c], f1[c], support[c]))
        assert e["auc"] == pytest.approx(roc_auc_score(y == c, p[:, c]))
    assert np.allclose(np.array(r["confusion_normalized"]).sum(1), 1)


def test_ties_in_probabilities_are_ranked_like_scikit_learn() -> None:
    y = np.array([0, 1, 2, 0, 1, 2, 1, 1])
    p = np.array([[0.5, 0.25, 0.25]] * 4 + [[0.2, 0.6, 0.2]] * 4)
    r = classification_report(y, p, NAMES)
    for c, name in enumerate(NAMES):
        assert r["per_class"][name]["auc"] == pytest.approx(roc_auc_score(y == c, p[:, c]))


def test_interval_contains_the_estimate_and_narrows_with_more_samples() -> None:
    widths = []
    for n in (60, 600):
        y, p = _fixed(n, seed=3)
        r = classification_report(y, p, NAMES)
        for m in ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc"):
            lo, hi = r[f"{m}_ci95"]
            assert lo <= r[m] <= hi, m
        widths.append(r["macro_f1_ci95"][1] - r["macro_f1_ci95"][0])
    assert widths[1] < widths[0] / 2  # ten times the data: about a third of the width


def test_missing_class_is_left_out_of_macro_averages() -> None:
    y = np.array([1, 1, 2, 2, 1, 2])
    p = np.array([[0.1, 0.8, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7], [0.1, 0.6, 0.3], [0.3, 0.4, 0.3], [0, 0.1, 0.9]])
    r = classification_report(y, p, NAMES)
    assert r["macro_f1"] == pytest.approx(f1_score(y, p.argmax(1), labels=[1, 2], average="macro"))
    assert r["per_class"]["normal"]["support"] == 0 and np.isnan(r["per_class"]["normal"]["auc"])
    assert "macro_f1" in format_report(r)


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        classification_report(np.array([0, 1]), np.zeros((2, 2)), NAMES)


def test_binary_auc_matches_sklearn_with_ties_and_weights() -> None:
    from sklearn.metrics import roc_auc_score

    from metrics.classification import binary_auc

    rng = np.random.default_rng(3)
    y = rng.random(300) < 0.4
    score = np.round(rng.random(300) + 0.3 * y, 1)  # many ties
    assert binary_auc(y, score) == pytest.approx(roc_auc_score(y, score))
    w = rng.integers(0, 4, size=(3, 300)).astype(float)
    expected = [roc_auc_score(np.repeat(y, row.astype(int)), np.repeat(score, row.astype(int))) for row in w]
    assert binary_auc(y, score, w) == pytest.approx(expected)
    assert np.isnan(binary_auc(np.ones(4, bool), score[:4]))


def test_youden_threshold_separates_separable_scores() -> None:
    from metrics.classification import youden_threshold

    y = np.array([0, 0, 0, 1, 1], bool)
    t = youden_threshold(y, np.array([0.1, 0.2, 0.3, 0.6, 0.9]))
    assert t == pytest.approx(0.45)  # midway between the last benign and the first malignant score
    with pytest.raises(ValueError, match="both"):
        youden_threshold(np.ones(3, bool), np.array([0.1, 0.2, 0.3]))


def test_sensitivity_threshold_is_the_highest_cut_that_keeps_the_target() -> None:
    from metrics.classification import sensitivity_threshold

    # malignant 0.9, 0.8, 0.7, 0.6, 0.2; benign 0.5, 0.3, 0.1
    y = np.array([1, 1, 1, 1, 1, 0, 0, 0], bool)
    score = np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.5, 0.3, 0.1])
    assert sensitivity_threshold(y, score, 0.8) == pytest.approx(0.55)  # 4 of 5 kept, all benign below
    assert sensitivity_threshold(y, score, 0.9) == pytest.approx(0.15)  # every cancer: two benign above too
    assert sensitivity_threshold(y, score, 0.6) == pytest.approx(0.65)
    for target in (0.6, 0.8, 0.9, 1.0):
        t = sensitivity_threshold(y, score, target)
        assert (score[y] >= t).mean() >= target and not np.isin(t, score)  # kept, and not on a case
    assert sensitivity_threshold(y, score, 1.0) == pytest.approx(0.15)
    with pytest.raises(ValueError, match="positive cases"):
        sensitivity_threshold(np.zeros(3, bool), np.array([0.1, 0.2, 0.3]), 0.9)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        sensitivity_threshold(y, score, 0.0)


def test_malignancy_report_on_a_site_without_normals() -> None:
    from metrics.classification import malignancy_report

    names = ("normal", "benign", "malignant")
    labels = ["benign", "benign", "benign", "malignant", "malignant", "malignant"]
    probs = np.array(
        [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6], [0.6, 0.1, 0.3], [0.0, 0.1, 0.9]]
    )
    groups = ["p1", "p1", "p2", "p3", "p4", "p4"]
    r = malignancy_report(labels, probs, names, groups, threshold=0.25)
    assert r["malignant_auc"] == pytest.approx(8.5 / 9)  # 0.3 ties 0.3 once
    # P(m) / (P(b) + P(m)): 1/3, 1/9, 3/8 against 2/3, 3/4, 9/10: every malignant above every benign.
    assert r["malignant_auc_renorm"] == pytest.approx(1.0)
    assert r["lesion_called_normal"] == pytest.approx(2 / 6)
    assert r["sensitivity"] == pytest.approx(1.0) and r["specificity"] == pytest.approx(2 / 3)
    assert (r["lesion_images"], r["lesion_groups"], r["malignancy_threshold"]) == (6, 4, 0.25)
    lo, hi = r["lesion_called_normal_ci95"]
    assert 0 <= lo <= 2 / 6 <= hi <= 1
    no_threshold = malignancy_report(labels, probs, names, groups)
    assert "sensitivity" not in no_threshold
    assert malignancy_report(labels[:3], probs[:3], names, groups[:3]) == {}  # no malignant image: nothing to rank
