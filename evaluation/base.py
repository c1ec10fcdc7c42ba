"""The evaluation contract every task meets: what to score (:class:`EvalRequest`) and the
:class:`Evaluator` that scores it.

An evaluator predicts the request's records with a model, applies what the run fitted on its
validation fold (the lesion gate, the temperature, the malignancy cut: :mod:`evaluation.run_files`),
scores the predictions with intervals over patients, breaks them down by site and scanner, and
draws its plots in ``out_dir``. Training calls it on the validation fold with ``fit=True``;
``evaluate.py`` and external validation call it on saved runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import keras

    from config.train import TrainConfig
    from data.discover import Case
    from evaluation.adapted import SourceRun


@dataclass(frozen=True)
class EvalRequest:
    """What an :class:`Evaluator` scores, and how.

    Attributes:
        records: The cases, in the order of every per-image output.
        out_dir: Where metrics' plots (and a classifier's ``predictions.csv``) go.
        history: The run's epoch rows, for the learning curves (empty: none drawn).
        fold_dir: The run's (or fold's) folder holding what it fitted; None: nothing fitted applies.
        fit: Fit those rules on ``records`` first and save them in ``fold_dir`` (training's
            evaluation of the validation fold); each case is then scored with the rules fitted on the
            other half of the fold (cross-fitting).
        own_data: False for another dataset, whose ids may collide with the run's: every case is
            scored with the rules fitted on the whole fold.
        tta: Average each prediction with the left-right mirrored image's (:mod:`evaluation.tta`).
        postprocess: Mask post-processing after the gate (:data:`models.options.POSTPROCESS`);
            segmentation and joint only.
        shift: Flag the images unlike the run's training images (:mod:`evaluation.shift`; it reads every
            image again). A joint evaluation flags them once, with its mask head.
        source: With ``fit``, the run this one was adapted from (``train.py --adapt``): a rule its
            validation fold cannot support is fitted with the source's validation fold, or kept from it
            (:mod:`evaluation.adapted`).
    """

    records: Sequence[Case]
    out_dir: Path
    history: Sequence[dict[str, float]] = ()
    fold_dir: Path | None = None
    fit: bool = False
    own_data: bool = True
    tta: bool = False
    postprocess: str = "none"
    shift: bool = True
    source: SourceRun | None = None


class Evaluator(Protocol):
    """Scores a model on an :class:`EvalRequest`; returns the metrics that go to ``metrics.json``."""

    def __call__(self, model: keras.Model, cfg: TrainConfig, request: EvalRequest) -> dict[str, Any]: ...


def scored_with(ids: Sequence[str], crossed: set[str], rule: str, fold_rule: str) -> str:
    """How a rule fitted with cross-fitted halves (the gate, the temperature, the cut) scored ``ids``.

    Args:
        ids: The cases scored.
        crossed: The cases that have a cross-fitted rule (the fold's halves).
        rule: The rule and how it was made, e.g. ``"gate fitted"``.
        fold_rule: What scored the other cases, e.g. ``"the gate fitted on the run's validation fold"``.
    """
    n = sum(i in crossed for i in ids)
    if n == len(ids):
        return f"each half of the validation fold with the {rule} on the other half"
    if n == 0:
        return fold_rule
    return f"{n} case(s) with the {rule} on the other half of the fold, the rest with {fold_rule}"
