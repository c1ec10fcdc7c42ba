"""The rules of a run adapted to a new site (``train.py --adapt``), fitted on what can support them.

Each rule (the lesion gate, the temperature, the malignancy cut) is fitted on the adapted run's own
validation fold when that fold supports it (:mod:`evaluation.support`); otherwise on the fold pooled
with the source run's validation fold, predicted by the adapted model, when the pool supports it;
otherwise the source run's saved rule is kept. Pooled rules are cross-fitted as the others: each
half of the run's own fold is scored with the rule fitted on the other half and the whole source fold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import keras
import numpy as np

from config.train import TrainConfig
from data.discover import Case
from evaluation.calibrate import FittedTemperature, fit_fold_temperature, group_halves
from evaluation.cut import FittedCut, choose_cut, fit_fold_cut
from evaluation.cut import rule as cut_rule
from evaluation.gate import MAX_LESION_MISS, FittedGate, fit_fold_gate, fit_gate, halves
from evaluation.run_files import load_fitted_cut, load_fitted_gate, load_fitted_temperature
from evaluation.support import (
    MIN_TEMPERATURE_CASES,
    SOURCE,
    Basis,
    Support,
    choose_basis,
    min_cut_malignant,
    min_gate_lesions,
)
from evaluation.tta import predict_records
from metrics.calibration import apply_temperature, fit_temperature
from models.postprocess import map_statistics

Rule = TypeVar("Rule")


@dataclass(frozen=True)
class SourceRun:
    """The run an adapted run started from.

    Attributes:
        fold_dir: Its folder (or fold's), holding its saved rules.
        records: Its validation cases; empty when its data were not found.
    """

    fold_dir: Path
    records: Sequence[Case] = ()


def _decide(own: Support, pooled: Callable[[], Support] | None, source: SourceRun) -> Basis:
    """:func:`evaluation.support.choose_basis`, computing the pool's support only when the fold falls short."""
    if own.ok or not source.records or pooled is None:
        return choose_basis(own, None, str(source.fold_dir))
    return choose_basis(own, pooled(), str(source.fold_dir))


def _kept(basis: Basis, fitted: Rule | None, what: str) -> Rule:
    """The source run's rule without its cross-fitted halves (they name the source's cases), or a clear error
    when it has none."""
    if fitted is None:
        raise FileNotFoundError(f"{basis.why()}, but {basis.source} has no {what} to keep")
    return replace(fitted, halves=())


def gate_support(truths: np.ndarray, probs: np.ndarray) -> Support:
    """Lesion images the model found (the gate's budget is on them) against :func:`min_gate_lesions`."""
    n = truths.shape[0]
    found = (truths.reshape(n, -1).max(axis=1) > 0.5) & (map_statistics(probs)[0] > 0)
    return Support("lesion images the model found", int(found.sum()), min_gate_lesions(MAX_LESION_MISS))


def adapted_gate(
    model: keras.Model, cfg: TrainConfig, ids: Sequence[str], labels: Sequence[str], truths, probs, source: SourceRun
) -> tuple[FittedGate, Basis]:
    """The adapted run's lesion gate and where it was fitted (see the module)."""
    ref: dict[str, Any] = {}

    def pooled() -> Support:
        _, ref["truths"], (ref["probs"],) = predict_records(model, source.records, cfg, "seg", False)
        return gate_support(np.concatenate([truths, ref["truths"]]), np.concatenate([probs, ref["probs"]]))

    basis = _decide(gate_support(truths, probs), pooled, source)
    if basis.fitted_on == SOURCE:
        return _kept(basis, load_fitted_gate(source.fold_dir), "lesion gate"), basis
    if basis.pooled is None:
        return fit_fold_gate(ids, labels, truths, probs), basis
    side = halves(labels)

    def fit(keep: np.ndarray):
        return fit_gate(np.concatenate([truths[keep], ref["truths"]]), np.concatenate([probs[keep], ref["probs"]]))

    parts = tuple((tuple(i for i, s in zip(ids, side, strict=True) if s == h), fit(side != h)) for h in (0, 1))
    return FittedGate(fit(np.ones(len(ids), dtype=bool)), parts), basis


def source_predictions(model: keras.Model, cfg: TrainConfig, source: SourceRun) -> dict[str, np.ndarray]:
    """Integer ``labels`` and ``raw`` class probabilities of the source run's validation cases, by ``model``."""
    _, onehot, (probs,) = predict_records(model, source.records, cfg, "cls", False)
    return {"labels": np.argmax(onehot, axis=-1), "raw": probs.astype(np.float64)}


def adapted_temperature(
    model: keras.Model,
    cfg: TrainConfig,
    fold: tuple[Sequence[str], np.ndarray, np.ndarray, Sequence[str], Sequence[str]],
    source: SourceRun,
) -> tuple[FittedTemperature, Basis, dict[str, np.ndarray]]:
    """The adapted run's temperature and where it was fitted; ``fold`` is (ids, labels, probs, names, groups).

    Returns:
        Also the source's validation cases as predicted (``labels``, ``raw``), when they were pooled.
    """
    ids, labels, raw, names, groups = fold
    ref: dict[str, np.ndarray] = {}
    what = "validation cases"

    def pooled() -> Support:
        ref.update(source_predictions(model, cfg, source))
        return Support(what, len(ids) + len(ref["labels"]), MIN_TEMPERATURE_CASES)

    basis = _decide(Support(what, len(ids), MIN_TEMPERATURE_CASES), pooled, source)
    if basis.fitted_on == SOURCE:
        return _kept(basis, load_fitted_temperature(source.fold_dir), "temperature"), basis, ref
    if basis.pooled is None:
        return fit_fold_temperature(ids, labels, raw, names, groups), basis, {}
    side = group_halves(names, groups)

    def fit(keep: np.ndarray) -> float:
        return fit_temperature(np.concatenate([labels[keep], ref["labels"]]), np.concatenate([raw[keep], ref["raw"]]))

    parts = tuple((tuple(i for i, s in zip(ids, side, strict=True) if s == h), fit(side != h)) for h in (0, 1))
    return FittedTemperature(fit(np.ones(len(ids), dtype=bool)), parts), basis, ref


def adapted_cut(
    fold: tuple[Sequence[str], Sequence[str], np.ndarray, Sequence[str]],
    source: SourceRun,
    source_p: Callable[[], tuple[np.ndarray, np.ndarray]] | None,
    target: float,
) -> tuple[FittedCut | None, Basis]:
    """The adapted run's malignancy cut and where it was fitted; ``fold`` is (ids, names, P(malignant), groups).

    ``source_p`` gives the source's validation cases' class names and calibrated P(malignant) (None: not
    available). With ``target`` 0 (Youden's J) the cut needs malignant images as a sensitivity target does.
    """
    ids, names, p, groups = fold
    names_arr = np.asarray(names)
    needed, what = min_cut_malignant(target or 0.9), "malignant images"
    ref: dict[str, np.ndarray] = {}

    def pooled() -> Support:
        ref["names"], ref["p"] = source_p()
        return Support(what, int((names_arr == "malignant").sum() + (ref["names"] == "malignant").sum()), needed)

    own = Support(what, int((names_arr == "malignant").sum()), needed)
    basis = _decide(own, pooled if source_p is not None else None, source)
    if basis.fitted_on == SOURCE:
        return _kept(basis, load_fitted_cut(source.fold_dir), "malignancy cut"), basis
    if basis.pooled is None:
        return fit_fold_cut(ids, names, p, groups, target), basis
    side = group_halves(list(names), list(groups))
    all_names = np.concatenate([names_arr, ref["names"]])
    all_p = np.concatenate([p, ref["p"]])

    def fit(keep: np.ndarray) -> float | None:
        member = np.concatenate([keep, np.ones(len(ref["p"]), dtype=bool)])
        return choose_cut(all_names, all_p, member, target)

    parts = tuple((tuple(i for i, s in zip(ids, side, strict=True) if s == h), fit(side != h)) for h in (0, 1))
    whole = fit(np.ones(len(ids), dtype=bool))
    return (None if whole is None else FittedCut(whole, parts, cut_rule(target))), basis


def calibrated_source(ref: dict[str, np.ndarray], temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """Class names and P(malignant) of the source's pooled cases, calibrated with the adapted run's temperature."""
    from core.classes import CLASS_NAMES

    probs = apply_temperature(ref["raw"], temperature)
    return np.array([CLASS_NAMES[k] for k in ref["labels"]]), probs[:, CLASS_NAMES.index("malignant")]
