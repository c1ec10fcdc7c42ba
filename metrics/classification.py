"""Classification metrics: Keras metrics for training, and the evaluation report.

The report computes every metric from confusion matrices and class ranks in
numpy, vectorized over bootstrap resamples, so 95% intervals for a dozen
metrics over 2000 resamples take well under a second (the tests check the
point estimates against scikit-learn).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from scipy.stats import rankdata

N_BOOT = 2000


def cls_metrics(num_classes: int = 3) -> list[keras.metrics.Metric]:
    """Metrics logged while training: accuracy, macro F1 (``f1``) and macro one-vs-rest AUC (``auc``)."""
    return [
        keras.metrics.CategoricalAccuracy(name="accuracy"),
        keras.metrics.F1Score(average="macro", name="f1"),
        keras.metrics.AUC(multi_label=True, num_labels=num_classes, name="auc"),
    ]


def confusion_matrices(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """Confusion matrices ``[..., true, predicted]`` of label arrays shaped ``(..., N)``."""
    lead = y_true.shape[:-1]
    flat = (y_true * k + y_pred).reshape(-1, y_true.shape[-1])
    offsets = np.arange(flat.shape[0])[:, None] * k * k
    counts = np.bincount((flat + offsets).ravel(), minlength=flat.shape[0] * k * k)
    return counts.reshape(*lead, k, k)


def _from_confusion(cm: np.ndarray, present: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics of confusion matrices ``(..., k, k)``; macro averages over ``present`` classes."""
    tp = np.diagonal(cm, axis1=-2, axis2=-1).astype(float)
    support = cm.sum(-1).astype(float)
    predicted = cm.sum(-2).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        row_norm = np.where(support[..., None] > 0, cm / support[..., None], 0.0)
    return {
        "accuracy": tp.sum(-1) / cm.sum((-2, -1)),
        "balanced_accuracy": recall[..., present].mean(-1),
        "macro_f1": f1[..., present].mean(-1),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "confusion_normalized": row_norm,
    }


def _ovr_auc(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """One-vs-rest AUC per class (Mann-Whitney, ties averaged), shaped ``(..., len(classes))``.

    Args:
        y_true: Labels ``(..., N)``.
        probs: Probabilities ``(..., N, k)``.
    """
    out = []
    for c in classes:
        pos = y_true == c
        n_pos = pos.sum(-1).astype(float)
        n_neg = pos.shape[-1] - n_pos
        ranks = rankdata(probs[..., c], axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            auc = ((ranks * pos).sum(-1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
        out.append(np.where((n_pos > 0) & (n_neg > 0), auc, np.nan))
    return np.stack(out, axis=-1)


def _ci(samples: np.ndarray, level: float = 0.95) -> list:
    """Percentile interval over the first axis, ignoring resamples where the metric is undefined."""
    a = (1 - level) / 2
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanquantile(samples, a, axis=0), np.nanquantile(samples, 1 - a, axis=0)
    return np.stack([lo, hi], axis=-1).tolist()


def classification_report(
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> dict[str, Any]:
    """Every classification metric with a 95% percentile-bootstrap interval over images.

    Args:
        y_true: Integer labels ``(N,)``.
        probs: Predicted probabilities ``(N, k)``; the prediction is the arg-max.
        class_names: Names of the ``k`` classes.
        n_boot: Bootstrap resamples.
        seed: Seed of the resampling.

    Returns:
        ``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``macro_auc`` (each with ``*_ci95``),
        ``per_class`` (precision, recall, F1, one-vs-rest AUC with intervals, support),
        ``confusion`` (counts) and ``confusion_normalized`` (rows sum to 1) with per-cell intervals.
        Macro averages run over the classes present in ``y_true``.

    Raises:
        ValueError: On empty input or mismatched shapes.
    """
    y_true = np.asarray(y_true, dtype=int)
    probs = np.asarray(probs, dtype=float)
    k = len(class_names)
    if len(y_true) == 0 or probs.shape != (len(y_true), k):
        raise ValueError(f"need labels (N,) and probabilities (N, {k}); got {y_true.shape} and {probs.shape}")
    present = np.unique(y_true)
    y_pred = probs.argmax(-1)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y_true), size=(n_boot, len(y_true)))
    point_cm = confusion_matrices(y_true, y_pred, k)
    point = _from_confusion(point_cm, present)
    boot = _from_confusion(confusion_matrices(y_true[idx], y_pred[idx], k), present)
    auc = _ovr_auc(y_true, probs, present)
    boot_auc = _ovr_auc(y_true[idx], probs[idx], present)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample may hold one class only: no AUC
        boot_macro_auc = np.nanmean(boot_auc, axis=-1)
    out: dict[str, Any] = {"n_images": int(len(y_true))}
    for name in ("accuracy", "balanced_accuracy", "macro_f1"):
        out[name] = float(point[name])
        out[f"{name}_ci95"] = _ci(boot[name])
    out["macro_auc"] = float(np.nanmean(auc)) if np.isfinite(auc).any() else float("nan")
    out["macro_auc_ci95"] = _ci(boot_macro_auc)
    out["per_class"] = _per_class(class_names, point_cm, point, boot, present, auc, boot_auc)
    out["confusion"] = point_cm.tolist()
    out["confusion_normalized"] = point["confusion_normalized"].tolist()
    out["confusion_normalized_ci95"] = _ci(boot["confusion_normalized"])
    return out


def _per_class(class_names, point_cm, point, boot, present, auc, boot_auc) -> dict[str, dict[str, Any]]:
    """Precision, recall, F1 and one-vs-rest AUC of each class with intervals, and its support."""
    auc_by_class = dict(zip(present.tolist(), auc.tolist(), strict=True))
    auc_ci = dict(zip(present.tolist(), _ci(boot_auc), strict=True))
    out = {}
    for c, name in enumerate(class_names):
        entry = {"support": int(point_cm[c].sum())}
        for m in ("precision", "recall", "f1"):
            entry[m] = float(point[m][c])
            entry[f"{m}_ci95"] = _ci(boot[m][:, c])
        entry["auc"] = auc_by_class.get(c, float("nan"))
        entry["auc_ci95"] = auc_ci.get(c, [float("nan")] * 2)
        out[name] = entry
    return out


def format_report(report: dict[str, Any]) -> str:
    """The report as a plain-text table (per class, then the overall metrics)."""
    lines = [f"{'class':<12}{'support':>8}{'precision':>20}{'recall':>20}{'F1':>20}{'AUC':>20}"]

    def cell(v: float, ci: Sequence[float]) -> str:
        return f"{v:.3f} ({ci[0]:.2f}-{ci[1]:.2f})"

    for name, e in report["per_class"].items():
        lines.append(
            f"{name:<12}{e['support']:>8}"
            + "".join(f"{cell(e[m], e[f'{m}_ci95']):>20}" for m in ("precision", "recall", "f1", "auc"))
        )
    for m in ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc"):
        lines.append(f"{m:<20}{cell(report[m], report[f'{m}_ci95'])}")
    return "\n".join(lines)


def binary_auc(y: np.ndarray, score: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray | float:
    """Area under the ROC curve of ``score`` for ``y`` (True positive), ties counted half.

    Args:
        y: Labels ``(N,)``.
        score: Scores ``(N,)``.
        weights: Optional ``(B, N)`` sample weights (bootstrap counts, :func:`reports.stats.group_weights`):
            one weighted AUC per row, computed in one pass.

    Returns:
        The AUC (a float, or ``(B,)`` with ``weights``); NaN where a class has no weight.
    """
    y = np.asarray(y, dtype=bool)
    score = np.asarray(score, dtype=float)
    w = np.ones((1, len(y))) if weights is None else np.asarray(weights, dtype=float)
    order = np.argsort(score, kind="stable")
    ranked = score[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])  # tied scores form one block
    ws = w[:, order]
    pos = np.add.reduceat(ws * y[order], starts, axis=1)
    neg = np.add.reduceat(ws * ~y[order], starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg  # negative weight strictly below each block
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (pos * (below + 0.5 * neg)).sum(1) / (pos.sum(1) * neg.sum(1))
    auc = np.where((pos.sum(1) > 0) & (neg.sum(1) > 0), auc, np.nan)
    return float(auc[0]) if weights is None else auc


def youden_threshold(y: np.ndarray, score: np.ndarray) -> float:
    """The score threshold (``score >= t`` is positive) that maximizes sensitivity + specificity - 1.

    Ties go to the lowest such threshold, midway to the next lower score so it does not sit on a case.

    Raises:
        ValueError: Unless ``y`` holds both classes.
    """
    y = np.asarray(y, dtype=bool)
    score = np.asarray(score, dtype=float)
    if y.all() or not y.any():
        raise ValueError("a threshold needs both positive and negative cases")
    cands = np.unique(score)
    sens = np.array([(score[y] >= t).mean() for t in cands])
    spec = np.array([(score[~y] < t).mean() for t in cands])
    best = int(np.argmax(sens + spec))
    return float(cands[best] if best == 0 else (cands[best] + cands[best - 1]) / 2)


def sensitivity_threshold(y: np.ndarray, score: np.ndarray, target: float) -> float:
    """The highest score threshold (``score >= t`` is positive) whose sensitivity on ``y`` is at least ``target``.

    Placed midway to the next lower score, as :func:`youden_threshold` places its cut, so it does not sit
    on a case; the sensitivity there is the same.

    Raises:
        ValueError: Unless ``y`` holds a positive case, or if ``target`` is not in (0, 1].
    """
    y = np.asarray(y, dtype=bool)
    score = np.asarray(score, dtype=float)
    if not y.any():
        raise ValueError("a sensitivity needs positive cases")
    if not 0 < target <= 1:
        raise ValueError(f"`target` must be in (0, 1]. Received: {target}")
    cands = np.unique(score)
    sens = np.array([(score[y] >= t).mean() for t in cands])  # falls as the threshold rises
    best = int(np.flatnonzero(sens >= target - 1e-12).max())
    return float(cands[best] if best == 0 else (cands[best] + cands[best - 1]) / 2)


def _weighted_share(hit: np.ndarray, member: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per row of ``w``: weighted share of ``member`` samples that are ``hit``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (w[:, member] * hit[member]).sum(1) / w[:, member].sum(1)


def _malignancy_rows(
    y: np.ndarray, p: np.ndarray, names: list[str], w: np.ndarray, threshold: float | np.ndarray | None
) -> dict[str, tuple[float, np.ndarray]]:
    """Each malignancy figure on the lesion images ``y`` (malignant) with probabilities ``p``: its value and
    its values under the bootstrap weights ``w``."""
    b, m = names.index("benign"), names.index("malignant")
    score = p[:, m]
    renorm = p[:, m] / np.maximum(p[:, b] + p[:, m], 1e-12)
    every = np.ones(len(y), dtype=bool)
    point_w = np.ones((1, len(y)))
    rows: dict[str, tuple[float, np.ndarray]] = {
        "malignant_auc": (binary_auc(y, score), binary_auc(y, score, w)),
        "malignant_auc_renorm": (binary_auc(y, renorm), binary_auc(y, renorm, w)),
    }
    if "normal" in names:
        called = p.argmax(1) == names.index("normal")
        rows["lesion_called_normal"] = (float(called.mean()), _weighted_share(called, every, w))
    if threshold is not None:
        positive = score >= threshold  # one cut, or each lesion image's own
        rows["sensitivity"] = (float(_weighted_share(positive, y, point_w)[0]), _weighted_share(positive, y, w))
        rows["specificity"] = (float(_weighted_share(~positive, ~y, point_w)[0]), _weighted_share(~positive, ~y, w))
    return rows


def malignancy_report(
    labels: Sequence[str],
    probs: np.ndarray,
    class_names: Sequence[str],
    groups: Sequence[object],
    threshold: float | np.ndarray | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> dict[str, Any]:
    """Malignant against benign on the lesion images, with 95% intervals bootstrapped over ``groups``.

    The question a site without normal images (BUS-BRA) can answer: among images with a lesion,
    does the model rank malignant above benign, and how many lesions does it call normal?

    Args:
        labels: Class name of each image.
        probs: Probabilities ``(N, k)`` over ``class_names`` (which must hold ``benign`` and ``malignant``).
        class_names: The model's classes.
        groups: Patient (or duplicate group) of each image: resamples draw whole groups.
        threshold: Cut on P(malignant) chosen elsewhere (the internal validation fold), or one cut per
            image (cross-fitted cuts, :mod:`evaluation.cut`); gives sensitivity and specificity. None: not
            reported.
        n_boot: Resamples.
        seed: Seed of the resampling.

    Returns:
        Flat keys (each with ``*_ci95``): ``malignant_auc`` (AUC of P(malignant)),
        ``malignant_auc_renorm`` (of P(malignant) / (P(benign) + P(malignant))),
        ``lesion_called_normal`` (share of lesion images whose arg-max is normal; absent without a
        normal class), ``sensitivity`` and ``specificity`` at ``threshold``; ``malignancy_threshold``,
        ``lesion_images``, ``lesion_groups``. Empty when the images hold no benign or no malignant one.
    """
    from reports.stats import group_weights

    names = list(class_names)
    lab = np.asarray(labels)
    keep = np.isin(lab, ["benign", "malignant"])
    y = lab[keep] == "malignant"
    if y.all() or not y.any():
        return {}
    p = np.asarray(probs, dtype=float)[keep]
    grp = [str(g) for g, k in zip(groups, keep, strict=True) if k]
    cut = threshold[keep] if isinstance(threshold, np.ndarray) else threshold
    rows = _malignancy_rows(y, p, names, group_weights(grp, n_boot, seed), cut)
    result: dict[str, Any] = {}
    for key, (value, boot) in rows.items():
        result[key] = value
        result[f"{key}_ci95"] = _ci(boot)
    one_cut = None if isinstance(threshold, np.ndarray) else threshold  # per-image cuts: the caller says which
    result.update(malignancy_threshold=one_cut, lesion_images=int(len(y)), lesion_groups=len(set(grp)))
    return result
