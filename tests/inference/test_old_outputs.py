"""predict.py writes what the code before issue 40 (fd7c1ca) wrote: every value, mask and overlay.

The expected outputs were written by fd7c1ca's predict.py (tests/fixtures/old_predictions/make_old_predictions.py)
with a joint run that code trained (tests/fixtures/old_runs): images of every readable kind, a class, a mask at
the image's own size, its measurements and an overlay each.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
from PIL import Image

import predict

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "old_predictions"
RUN = FIXTURE.parent / "old_runs" / "runs" / "joint" / "old"
PATHS = ("file", "mask", "overlay")


def _rows(folder: Path) -> dict[str, dict[str, str]]:
    with open(folder / "predictions.csv", newline="") as f:
        return {Path(r["file"]).name: r for r in csv.DictReader(f)}


def _same(old: str, new: str) -> bool:
    try:
        a, b = float(old), float(new)
    except ValueError:
        return old == new
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7)


def test_predictions_masks_and_overlays_equal_the_old_codes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    predict.run(str(FIXTURE / "images"), model=str(RUN), out=str(out))
    old, new = _rows(FIXTURE / "out"), _rows(out)
    assert sorted(new) == sorted(old) and len(old) == 10
    for name, row in old.items():
        assert not row["error"] and row["mask"] and row["overlay"]
        for column, value in row.items():  # today's columns include the old ones, with the same values
            if column not in PATHS:
                assert _same(value, new[name][column]), (name, column, value, new[name][column])
        for column in ("mask", "overlay"):
            expected = np.array(Image.open(FIXTURE / "out" / f"{column}s" / Path(row[column]).name))
            got = np.array(Image.open(new[name][column]))
            np.testing.assert_array_equal(got, expected, err_msg=f"{name}: {column}")
