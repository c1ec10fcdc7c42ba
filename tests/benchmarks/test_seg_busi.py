"""seg_busi.py: reading a run folder into a row, and the table with its seed-to-seed and fold-to-fold lines."""

from __future__ import annotations

import csv
import json

import _common
import pytest
import seg_busi


def _run_folder(path, dices, train_seconds, epoch_seconds, train_cases=21):
    path.mkdir(parents=True)
    with open(path / "history.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["epoch", "val_dice", "val_iou", "train_seconds", "epoch_seconds"])
        w.writeheader()
        for i, (d, t, e) in enumerate(zip(dices, train_seconds, epoch_seconds, strict=True), 1):
            w.writerow({"epoch": i, "val_dice": d, "val_iou": d - 0.1, "train_seconds": t, "epoch_seconds": e})
    (path / "metrics.json").write_text(json.dumps({"train_cases": train_cases, "val_cases": 7}))
    return path


def test_read_run_reports_last_and_best_and_times_without_the_first_epoch(tmp_path):
    run = _run_folder(tmp_path / "run", [0.5, 0.8, 0.7], [60.0, 2.0, 3.0], [70.0, 2.5, 3.5])
    row = seg_busi.read_run(run)
    assert row["last"] == {"epoch": 3, "dice": 0.7, "iou": pytest.approx(0.6)}
    assert row["best"]["epoch"] == 2 and row["best"]["dice"] == 0.8
    assert row["seconds_per_epoch"] == pytest.approx(3.0)  # (2.5 + 3.5) / 2; epoch 1 traces the graph
    assert row["train_images_per_second"] == pytest.approx(16 * 2 / 5.0)  # whole batches of 8 only
    assert (row["train_cases"], row["val_cases"]) == (21, 7)


def _row(seed, last, best, variant="default", fold=0):
    return {
        "model": "unet", "precision": "off", "variant": variant, "depth": 4, "schedule": "constant", "seed": seed,
        "fold": fold,
        "last": {"epoch": 30, "dice": last, "iou": last - 0.1}, "best": {"epoch": 20, "dice": best, "iou": best - 0.1},
        "seconds_per_epoch": 16.0, "train_images_per_second": 34.0, "train_cases": 516, "val_cases": 129,
        "commit": "abc1234",
    }  # fmt: skip


def test_markdown_lists_every_run_and_summarizes_seeds_of_one_configuration():
    result = {
        "commands": ["python benchmarks/seg_busi.py"],
        "protocol": "P",
        "date": "2026-11-24",
        "runs": [_row(1, 0.74, 0.75), _row(0, 0.72, 0.73), _row(0, 0.70, 0.71, variant="no-trim")],
    }
    text = seg_busi.markdown(result)
    table = [line for line in text.splitlines() if line.startswith("| unet ")]
    assert [line.split(" | ")[3] for line in table] == ["0", "0", "1"]  # sorted by seed, then malloc
    assert "| 0.720 | 0.620 | 0.730 (20) | 16.0 | 34.0 | abc1234 |" in table[0]
    # mean and sample standard deviation of the default-malloc seeds 0 and 1 only
    assert "fold 0, float32, default malloc; seeds 0, 1): last-epoch Dice 0.730 +- 0.014 (range 0.720-0.740)" in text
    assert "Fold to fold" not in text
    assert "Not yet measured with this protocol: unet mixed bfloat16 (default)" in text


def test_markdown_gives_the_fold_column_sizes_and_a_fold_to_fold_line():
    result = {
        "commands": ["python benchmarks/seg_busi.py --folds 1 2"],
        "protocol": "P",
        "date": "2026-11-24",
        "runs": [
            {**_row(0, 0.78, 0.79, fold=2), "train_cases": 510, "val_cases": 135},
            _row(0, 0.72, 0.73),
            _row(0, 0.76, 0.77, fold=1),
            _row(1, 0.74, 0.75),
        ],
    }
    text = seg_busi.markdown(result)
    table = [line.split(" | ") for line in text.splitlines() if line.startswith("| unet ")]
    assert [(row[3], row[4]) for row in table] == [("0", "0"), ("0", "1"), ("0", "2"), ("1", "0")]  # (seed, fold)
    assert (
        "(fold 0: 516 training, 129 validation; fold 1: 516 training, 129 validation; "
        "fold 2: 510 training, 135 validation images)"
    ) in text
    # seed 0 over folds 0-2 (0.72, 0.76, 0.78): mean 0.753, sample sd 0.031; the seed-1 run is not part of it
    assert (
        "Fold to fold (unet, depth 4, constant LR, seed 0, float32, default malloc; folds 0, 1, 2): "
        "last-epoch Dice 0.753 +- 0.031 (range 0.720-0.780)"
    ) in text


def test_a_run_at_another_learning_rate_is_its_own_row_and_joins_no_seed_line(tmp_path):
    slow = {**_row(0, 0.65, 0.66, variant="no-trim"), "model": "segformer_b0", "lr": 1e-4}
    runs = [_row(0, 0.72, 0.73), _row(1, 0.74, 0.75), {**_row(1, 0.60, 0.61), "lr": 1e-4}]
    text = seg_busi.markdown({"commands": ["c"], "protocol": "P", "date": "2026-12-03", "runs": [*runs, slow]})
    assert "| segformer_b0 (lr 0.0001) | 4 | constant | 0 | 0 | float32 | no-trim | 0.650 |" in text
    assert "| unet (lr 0.0001) | 4 | constant | 1 | 0 |" in text and "| unet | 4 | constant | 1 | 0 |" in text
    # the seed line pools the protocol's two seeds only, not the 1e-4 run of seed 1
    assert "(unet, depth 4, constant LR, fold 0, float32, default malloc; seeds 0, 1): last-epoch Dice 0.730" in text
    assert "segformer_b0 float32 (no-trim)" in text.split("Not yet measured with this protocol: ")[1]
    # a new 1e-3 run replaces an old row without the field (measured at 1e-3); a 1e-4 run sits beside it
    old = {"command": "old", "protocol": "P", "runs": [_row(0, 0.70, 0.71)]}
    (tmp_path / "seg.json").write_text(json.dumps(old))
    for lr, last in ((1e-3, 0.75), (1e-4, 0.6)):
        new = {"command": "new", "protocol": "P", "runs": [_row(0, last, last) | {"lr": lr}]}
        merged = _common.merge_previous(tmp_path / "seg.json", new, seg_busi.KEY, {"lr": seg_busi.LR})
        (tmp_path / "seg.json").write_text(json.dumps(merged))
    assert sorted((r.get("lr"), r["last"]["dice"]) for r in merged["runs"]) == [(1e-4, 0.6), (1e-3, 0.75)]
