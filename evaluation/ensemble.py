"""Ensembles of classification runs: soft voting, F1-weighted voting, stacking.

Members are read from the ``predictions.csv`` their runs wrote (the best
weights' probabilities on each fold's validation cases), so building an
ensemble needs no model and no GPU. For ``--fold all`` runs those files hold
out-of-fold probabilities for every case; stacking fits a scikit-learn
``HistGradientBoostingClassifier`` on them fold by fold and predicts each fold
with a stacker fitted on the other folds only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.classes import CLASS_NAMES
from core.errors import MissingFileError, OptionError
from evaluation.cls import PREDICTIONS_NAME, read_predictions
from metrics.classification import classification_report

METHODS = ("soft", "weighted", "stack")


@dataclass
class Member:
    """One run's validation predictions, aligned to a common case order."""

    name: str
    ids: list[str]
    labels: np.ndarray
    probs: np.ndarray
    folds: np.ndarray  # fold index of each case


def _fold_dirs(run: Path) -> list[tuple[int, Path]]:
    config = json.loads((run / "config.json").read_text())
    if config.get("task") != "cls":
        raise OptionError(f"{run} is not a classification run (task={config.get('task')!r})")
    if config["fold"] != -1:
        return [(int(config["fold"]), run)]
    return sorted((int(p.name[4:]), p) for p in run.glob("fold*") if p.name[4:].isdigit())


def load_member(run: str | Path) -> Member:
    """Read a classification run's validation predictions (every fold of a ``--fold all`` run).

    Raises:
        FileNotFoundError: If the run or its predictions are missing (an unfinished run).
        ValueError: If the run is not a classification run.
    """
    run = Path(run)
    if not (run / "config.json").is_file():
        raise MissingFileError(f"`--runs` must be run folders with config.json. Received: {run}")
    ids: list[str] = []
    labels, probs, folds = [], [], []
    for k, d in _fold_dirs(run):
        path = d / PREDICTIONS_NAME
        if not path.is_file():
            raise MissingFileError(f"{path} is missing: is the run finished?")
        i, y, p = read_predictions(path)
        ids += i
        labels.append(y)
        probs.append(p)
        folds.append(np.full(len(i), k))
    return Member(run.name or str(run), ids, np.concatenate(labels), np.concatenate(probs), np.concatenate(folds))


def align(members: Sequence[Member]) -> list[Member]:
    """Put every member in the first member's case order.

    Raises:
        ValueError: If the members were validated on different cases, folds or labels.
    """
    ref = members[0]
    out = [ref]
    for m in members[1:]:
        if sorted(m.ids) != sorted(ref.ids):
            raise OptionError(
                f"runs {ref.name!r} and {m.name!r} were validated on different cases; "
                "ensemble runs trained on the same splits and folds"
            )
        pos = {i: n for n, i in enumerate(m.ids)}
        order = np.array([pos[i] for i in ref.ids])
        m = Member(m.name, list(ref.ids), m.labels[order], m.probs[order], m.folds[order])
        if not (np.array_equal(m.labels, ref.labels) and np.array_equal(m.folds, ref.folds)):
            raise OptionError(f"runs {ref.name!r} and {m.name!r} disagree on labels or folds of the same cases")
        out.append(m)
    return out


def _macro_f1(labels: np.ndarray, probs: np.ndarray) -> float:
    return classification_report(labels, probs, CLASS_NAMES, n_boot=1)["macro_f1"]


def soft_vote(members: Sequence[Member]) -> np.ndarray:
    """Mean of the members' probabilities."""
    return np.mean([m.probs for m in members], axis=0)


def weighted_vote(members: Sequence[Member]) -> tuple[np.ndarray, dict[str, Any]]:
    """Probabilities weighted by each member's validation macro F1.

    With several folds, each fold's weights come from the members' F1 on the other
    folds, so no case's weight is chosen on that case. With one fold the weights are
    the F1 on that same fold (the only validation there is), which flatters the result.
    """
    ref = members[0]
    probs = np.zeros_like(ref.probs)
    weights: dict[str, Any] = {}
    folds = np.unique(ref.folds)
    for k in folds:
        here = ref.folds == k
        fit = ~here if len(folds) > 1 else here
        w = np.array([_macro_f1(m.labels[fit], m.probs[fit]) for m in members])
        w = w / w.sum() if w.sum() > 0 else np.full(len(members), 1 / len(members))
        probs[here] = np.tensordot(w, np.stack([m.probs[here] for m in members]), axes=1)
        weights[f"fold{k}"] = dict(zip([m.name for m in members], w.tolist(), strict=True))
    return probs, weights


def default_stacker(seed: int = 0):
    """A small gradient-boosting classifier on member probabilities."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=100, learning_rate=0.05, max_depth=3, random_state=seed)


def stack(
    members: Sequence[Member],
    make_stacker: Callable[[], Any] = default_stacker,
) -> np.ndarray:
    """Cross-validated stacking: fold ``k`` is predicted by a stacker fitted on the other folds only.

    Features are the members' out-of-fold probabilities side by side.

    Raises:
        ValueError: With fewer than two folds (a ``--fold all`` run is needed).
    """
    ref = members[0]
    folds = np.unique(ref.folds)
    if len(folds) < 2:
        raise OptionError(
            "`--method stack` needs out-of-fold predictions of cross-validation runs (train.py --fold all); "
            "these runs have one fold"
        )
    x = np.concatenate([m.probs for m in members], axis=1)
    probs = np.zeros_like(ref.probs)
    for k in folds:
        here = ref.folds == k
        model = make_stacker()
        model.fit(x[~here], ref.labels[~here])
        p = model.predict_proba(x[here])
        probs[np.ix_(here, model.classes_)] = p  # classes absent from training keep probability 0
    return probs


def combine(members: Sequence[Member], method: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Ensemble probabilities of ``method`` and what was fitted (weights)."""
    if method not in METHODS:
        raise OptionError(f"`method` must be one of {list(METHODS)}. Received: method={method!r}")
    if method == "soft":
        return soft_vote(members), {}
    if method == "weighted":
        probs, weights = weighted_vote(members)
        return probs, {"weights": weights}
    return stack(members), {"stacker": "HistGradientBoostingClassifier(max_iter=100, learning_rate=0.05, max_depth=3)"}
