"""The tables ``predict.py`` writes: ``predictions.csv`` and ``predictions.json``."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from core.atomic import write_json, write_text
from inference.backends import Backend


def write_predictions(
    rows: list[dict[str, Any]],
    out_dir: Path,
    backend: Backend,
    tta: bool,
    pixel_spacing: float | None,
    postprocess: str = "none",
    shift: dict[str, Any] | None = None,
) -> None:
    """``predictions.csv`` (one row per file, every column) and ``predictions.json`` (with run info and ``shift``,
    how many images look unlike the training images: :func:`data.shift.summarize`)."""
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if v is None else v for k, v in r.items()})
    write_text(out_dir / "predictions.csv", buf.getvalue())
    write_json(
        out_dir / "predictions.json",
        {
            "model": backend.description,
            "task": backend.task,
            "tta": tta,
            "postprocess": postprocess,
            "pixel_spacing_mm": pixel_spacing,
            "shift": shift,
            "predictions": rows,
        },
    )
