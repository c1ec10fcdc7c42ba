"""Which evaluated images look unlike the run's training images (:mod:`data.shift`), for the metrics."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data.discover import Case
from data.imageio import read_image
from data.shift import image_statistics, outside, summarize, summary_line
from evaluation.run_files import load_description


def shift_report(records: Sequence[Case], fold_dir: Path | None) -> tuple[list[list[str]], dict[str, Any] | None]:
    """Each record's statistics outside the training images' range, and the dataset's summary with its line.

    Returns ``([[]] * n, None)`` for a run without a description of its training images.
    """
    description = load_description(fold_dir)
    if description is None:
        return [[] for _ in records], None
    stats = [image_statistics(read_image(r.image)) for r in records]
    summary = summarize(stats, description)
    summary["line"] = summary_line(summary)
    return [outside(s, description) for s in stats], summary
