"""Does an image look like the training images? A description of a run's training images, and the flags
of new images (no labels needed) that fall outside it.

The statistics are those ``python -m data check`` compares (:data:`data.schema.SHIFT_FIELDS`: size, aspect,
intensity, colour, dark background, speckle), computed from the pixels alone. An image is flagged on each
statistic outside the training images' range (their smallest to their largest value); a dataset has
shifted on a statistic when its median leaves the training images' 5-95% range, as ``data check`` says.
Nothing stops on a flag: it is reported beside the predictions and the metrics.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data.imageio import to_gray
from data.scan import acquisition_statistics
from data.schema import SHIFT_FIELDS, SHIFT_QUANTILES

DESCRIPTION_VERSION = 1
DESCRIPTION_FILE = "image_description.json"
"""A run's (or fold's) training images described, beside its weights."""


def image_statistics(image: np.ndarray) -> dict[str, float]:
    """The shift statistics of one decoded image ``(H, W[, C])``, as the dataset scan computes them."""
    image = image if image.ndim == 3 else image[:, :, None]
    gray = to_gray(image)
    h, w = gray.shape
    stats = {"width": float(w), "height": float(h)}
    stats.update(mean_intensity=round(float(gray.mean()), 3), std_intensity=round(float(gray.std()), 3))
    stats.update(acquisition_statistics(image, gray))
    return {f: float(stats[f]) for f in SHIFT_FIELDS}


def describe(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The training images' description: per statistic its range and 5-95% range, and how many images.

    Raises:
        ValueError: If there are no rows.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("a description needs at least one image")
    fields = {}
    for f in SHIFT_FIELDS:
        values = np.array([float(r[f]) for r in rows if r.get(f) is not None])
        if values.size:
            lo, hi = (float(np.quantile(values, q)) for q in SHIFT_QUANTILES)
            fields[f] = {"min": float(values.min()), "max": float(values.max()), "q05": lo, "q95": hi}
    return {"version": DESCRIPTION_VERSION, "n_images": len(rows), "fields": fields}


def outside(stats: Mapping[str, float], description: Mapping[str, Any]) -> list[str]:
    """The statistics of one image that fall outside the training images' range."""
    return [f for f, r in description["fields"].items() if not r["min"] <= stats[f] <= r["max"]]


def summarize(all_stats: Sequence[Mapping[str, float]], description: Mapping[str, Any]) -> dict[str, Any]:
    """How many images are flagged, on which statistics, and on which the dataset's median has shifted."""
    flags = [outside(s, description) for s in all_stats]
    counts = {f: sum(f in fl for fl in flags) for f in description["fields"]}
    shifted = {}
    for f, r in description["fields"].items():
        median = float(np.median([s[f] for s in all_stats])) if all_stats else None
        if median is not None and not r["q05"] <= median <= r["q95"]:
            shifted[f] = {"median": median, "training_q05": r["q05"], "training_q95": r["q95"]}
    return {
        "n_images": len(all_stats),
        "flagged": sum(bool(fl) for fl in flags),
        "per_statistic": {f: n for f, n in counts.items() if n},
        "shifted": shifted,
    }


def summary_line(summary: Mapping[str, Any]) -> str:
    """One line for a command's output: flagged images, and the statistics whose median shifted."""
    n, k = summary["n_images"], summary["flagged"]
    text = f"{k} of {n} image(s) look unlike the training images"
    if summary["per_statistic"]:
        text += " (" + ", ".join(f"{f} {c}" for f, c in summary["per_statistic"].items()) + ")"
    if summary["shifted"]:
        text += "; shifted: " + ", ".join(summary["shifted"]) + " (the model was not validated on such images)"
    return text


def read_description(folder: str | Path | None) -> dict[str, Any] | None:
    """The description saved in a run (or fold) folder, or None (runs trained before descriptions)."""
    path = Path(folder) / DESCRIPTION_FILE if folder is not None else None
    if path is None or not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))
