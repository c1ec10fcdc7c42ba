"""monai_basicunet.py without PyTorch: a worker's history summarized, and the table."""

from __future__ import annotations

import monai_basicunet
import pytest


def _history(dices, train_seconds, epoch_seconds):
    rows = zip(dices, train_seconds, epoch_seconds, strict=True)
    return [
        {"epoch": i, "val_dice": d, "val_iou": d - 0.1, "train_seconds": t, "epoch_seconds": e}
        for i, (d, t, e) in enumerate(rows, 1)
    ]


def _worker_output(dices, train_seconds, epoch_seconds):
    return {
        "parameters": 1979009, "torch": "2.13.0+cpu", "monai": "1.6.0", "train_images": 512,
        "train_cases": 516, "val_cases": 129, "history": _history(dices, train_seconds, epoch_seconds),
    }  # fmt: skip


def test_summarize_reports_last_and_best_and_times_without_the_first_epoch():
    run = _worker_output([0.5, 0.8, 0.7], [40.0, 20.0, 30.0], [45.0, 22.0, 32.0])
    row = monai_basicunet.summarize(run, fold=2, seed=3, variant="no-trim", commit="abc1234")
    assert (row["fold"], row["seed"], row["variant"], row["commit"], row["epochs"]) == (2, 3, "no-trim", "abc1234", 3)
    assert row["last"] == {"epoch": 3, "dice": 0.7, "iou": pytest.approx(0.6)}
    assert row["best"]["epoch"] == 2 and row["best"]["dice"] == 0.8
    assert row["seconds_per_epoch"] == pytest.approx(27.0)
    assert row["train_images_per_second"] == pytest.approx(512 * 2 / 50.0)
    assert row["parameters"] == 1979009 and row["monai"] == "1.6.0"


def _rows(specs):
    return [
        monai_basicunet.summarize(_worker_output([0.7, d], [30.0, 24.0], [31.0, 25.0]), fold, seed, variant, "abc1234")
        for fold, seed, variant, d in specs
    ]


def test_markdown_sorts_runs_and_summarizes_the_default_malloc_seeds():
    runs = _rows([(0, 1, "default", 0.75), (0, 0, "no-trim", 0.70), (0, 0, "default", 0.73)])
    text = monai_basicunet.markdown({"commands": ["c1", "c2"], "protocol": "P", "date": "2026-11-24", "runs": runs})
    table = [line.split(" | ") for line in text.splitlines() if line.startswith("| 0 | ")]
    assert [row[1:3] for row in table] == [["0", "default"], ["0", "no-trim"], ["1", "default"]]
    assert " | ".join(table[0]).endswith("| 0.730 | 0.630 | 0.730 (2) | 25.0 | 21.3 | abc1234 |")
    assert "Command: `c1`" in text and "Command: `c2`" in text
    assert "1.98M parameters" in text and "fold 0: 516 training, 129 validation images" in text
    assert "Seed to seed (default malloc, fold 0; seeds 0, 1): last-epoch Dice 0.740 +- 0.014 (range 0.730-0.750)" in (
        text
    )
    assert "Fold to fold" not in text


def test_markdown_summarizes_folds_of_one_seed_per_malloc_setting():
    runs = _rows(
        [(2, 0, "default", 0.78), (0, 0, "default", 0.72), (1, 0, "default", 0.76), (1, 0, "no-trim", 0.5),
         (0, 0, "no-trim", 0.6), (3, 0, "no-trim", 0.9)]
    )  # fmt: skip
    text = monai_basicunet.markdown({"commands": ["c"], "protocol": "P", "date": "2026-11-24", "runs": runs})
    table = [line.split(" | ")[:3] for line in text.splitlines() if line[:2] == "| " and line[2].isdigit()]
    assert table == [
        ["| 0", "0", "default"], ["| 0", "0", "no-trim"], ["| 1", "0", "default"], ["| 1", "0", "no-trim"],
        ["| 2", "0", "default"], ["| 3", "0", "no-trim"],
    ]  # fmt: skip
    lines = [line for line in text.splitlines() if line.startswith("Fold to fold")]
    # each malloc setting alone: 0.72, 0.76, 0.78 give mean 0.753, sample sd 0.031; 0.6, 0.5, 0.9 give 0.667, 0.208, and
    # their best epochs (at least the first epoch's 0.7) 0.767, 0.115
    assert lines == [
        "Fold to fold (default malloc, seed 0; folds 0, 1, 2): last-epoch Dice 0.753 +- 0.031 (range 0.720-0.780), "
        "best Dice 0.753 +- 0.031 (range 0.720-0.780); mean +- standard deviation.",
        "Fold to fold (no-trim malloc, seed 0; folds 0, 1, 3): last-epoch Dice 0.667 +- 0.208 (range 0.500-0.900), "
        "best Dice 0.767 +- 0.115 (range 0.700-0.900); mean +- standard deviation.",
    ]
    assert "Seed to seed" not in text
