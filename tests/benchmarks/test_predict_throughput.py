"""benchmarks/predict_throughput.py's bookkeeping: the table it writes, and what it needs to measure."""

from __future__ import annotations

import predict_throughput as pt
import pytest


def _row(variant: str, forward: float | None, old: float, new: float, bare: float, **extra) -> dict:
    def timing(rate: float) -> dict:
        return {"seconds": 780 / rate, "images": 780, "images_per_s": rate}

    row = {"run": "/x/runs/seg/exp", "variant": variant, "old": timing(old), "new": timing(new),
           "new_no_overlays": timing(bare), "cpu": "Some CPU", "commit": "abc1234", "old_code": "/tmp/old"}  # fmt: skip
    row.update(extra)
    if forward is not None:
        row["forward_images_per_s"] = forward
    return row


def test_the_table_gives_each_rate_and_the_speed_up_over_the_old_code() -> None:
    rows = [_row("default", 190.0, 7.2, 18.0, 25.2), _row("no-trim", 200.0, 8.0, 20.0, 28.0),
            _row("default", None, 4.0, 8.0, 12.0, run="/x/export/seg", kind="saved_model",
                 dataset="BUS-BRA")]  # fmt: skip
    text = pt.markdown({"rows": rows})
    assert "| exp | seg | BUSI | default | 190.0 | 7.20 | 18.00 | 25.20 | 2.5x (3.5x without overlays) | 91% " in text
    assert "| exp | seg | BUSI | no-trim | 200.0 | 8.00 | 20.00 | 28.00 | 2.5x (3.5x without overlays) | 90% " in text
    assert "| seg | saved_model | BUS-BRA | default | — | 4.00 | 8.00 | 12.00 | 2.0x (3.0x without overlays) | — " in (
        text
    )
    assert text.count("| Some CPU | abc1234 / old |") == 3  # rows without the old code's commit name its folder
    export = _row("default", None, 4.0, 8.0, 12.0, run="/x/export/unet/1", kind="saved_model", old_commit="fd7c1ca")
    assert "| unet/1 | saved_model | BUSI |" in pt.markdown({"rows": [export]})
    assert "| Some CPU | abc1234 / fd7c1ca |" in pt.markdown({"rows": [export]})


def test_rows_merge_by_model_dataset_and_malloc(tmp_path) -> None:
    path = tmp_path / "r.json"
    first = pt._merge(path, [_row("default", 1.0, 1.0, 1.0, 1.0), _row("no-trim", 1.0, 1.0, 1.0, 1.0)])
    path.write_text(__import__("json").dumps(first))
    again = pt._merge(path, [_row("default", 2.0, 2.0, 2.0, 2.0)])
    assert [(r["variant"], r["forward_images_per_s"]) for r in again["rows"]] == [("no-trim", 1.0), ("default", 2.0)]


def test_measuring_needs_runs_and_the_old_code(tmp_path) -> None:
    with pytest.raises(SystemExit):
        pt.main(["--runs", str(tmp_path), "--json", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "B.md")])
