"""benchmarks/predict_throughput.py's bookkeeping: the table it writes, and what it needs to measure."""

from __future__ import annotations

import predict_throughput as pt
import pytest


def _row(variant: str, forward: float, old: float, new: float, bare: float) -> dict:
    def timing(rate: float) -> dict:
        return {"seconds": 780 / rate, "images": 780, "images_per_s": rate}

    return {"run": "/x/runs/seg/exp", "variant": variant, "forward_images_per_s": forward,
            "old": timing(old), "new": timing(new), "new_no_overlays": timing(bare)}  # fmt: skip


def test_the_table_gives_each_rate_and_the_speed_up_over_the_old_code() -> None:
    doc = {"cpu": "Some CPU", "commit": "abc1234", "old_code": "/tmp/old",
           "rows": [_row("default", 190.0, 7.2, 18.0, 25.2), _row("no-trim", 200.0, 8.0, 20.0, 28.0)]}  # fmt: skip
    text = pt.markdown(doc)
    assert text.startswith("CPU: Some CPU; code abc1234 against the checkout /tmp/old.")
    assert "| exp | default | 190.0 | 7.20 | 18.00 | 25.20 | 2.5x (3.5x without overlays) |" in text
    assert "| exp | no-trim | 200.0 | 8.00 | 20.00 | 28.00 | 2.5x (3.5x without overlays) |" in text


def test_measuring_needs_runs_and_the_old_code(tmp_path) -> None:
    with pytest.raises(SystemExit):
        pt.main(["--runs", str(tmp_path), "--json", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "B.md")])
