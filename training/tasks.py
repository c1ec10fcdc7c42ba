"""Every task's :class:`~training.task.TaskSpec`, by name: the one table the trainer reads."""

from __future__ import annotations

from training.cls import CLS_SPEC
from training.joint import JOINT_SPEC
from training.seg import SEG_SPEC
from training.task import TaskSpec

SPECS: dict[str, TaskSpec] = {"seg": SEG_SPEC, "cls": CLS_SPEC, "joint": JOINT_SPEC}


def task_spec(task: str) -> TaskSpec:
    """The :class:`TaskSpec` of ``task``.

    Raises:
        ValueError: If the task has no training support.
    """
    if task not in SPECS:
        raise ValueError(f"`task` must be 'seg', 'cls' or 'joint'. Received: {task!r}")
    return SPECS[task]
