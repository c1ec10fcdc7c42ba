"""Each task's evaluator and summary figures, by task name: what ``evaluate.py`` and training look up."""

from __future__ import annotations

from evaluation import cls, joint, seg
from evaluation.base import Evaluator

EVALUATORS: dict[str, Evaluator] = {"seg": seg.evaluate_seg, "cls": cls.evaluate_cls, "joint": joint.evaluate_joint}
SUMMARY_KEYS: dict[str, tuple[str, ...]] = {
    "seg": seg.SUMMARY_KEYS,
    "cls": cls.SUMMARY_KEYS,
    "joint": joint.SUMMARY_KEYS,
}


def evaluator(task: str) -> Evaluator:
    """The :class:`~evaluation.base.Evaluator` of ``task``.

    Raises:
        ValueError: If ``task`` is not one of seg, cls, joint.
    """
    if task not in EVALUATORS:
        raise ValueError(f"`task` must be one of {list(EVALUATORS)}. Received: {task!r}")
    return EVALUATORS[task]


def summary_keys(task: str) -> tuple[str, ...]:
    """The figures of ``task``'s summary line and cross-validation summary (:func:`evaluation.summary.cv_summary`)."""
    evaluator(task)  # raises on an unknown task
    return SUMMARY_KEYS[task]
