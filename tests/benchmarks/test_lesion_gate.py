"""lesion_gate.py: pooling folds, the map statistics, and the section it writes."""

from __future__ import annotations

import lesion_gate as lg
import numpy as np
import pytest


def _images(n_normal, normal_empty, n_lesion, lesion_empty, dice=0.7):
    rows = [{"label": "normal", "dice": float(i < normal_empty), "dice_ungated": 0.0, "empty": i < normal_empty,
             "empty_ungated": False} for i in range(n_normal)]  # fmt: skip
    rows += [{"label": "benign", "dice": 0.0 if i < lesion_empty else dice, "dice_ungated": dice,
              "empty": i < lesion_empty, "empty_ungated": False} for i in range(n_lesion)]  # fmt: skip
    return rows


def _run(fold, per_image, candidate="baseline"):
    share = {"normal_left_empty": 0.5, "lesion_left_empty": 0.1, "lesion_dice": 0.6}
    cis = {f"{k}_ci95": [v - 0.1, v + 0.1] for k, v in share.items()}
    sep = {
        "statistics": {name: {"auc": 0.8, "sensitivity_at_90_specificity": 0.5} for name in lg.STATISTICS},
        "budgets": [
            {"budget": b, "normal_empty": 1, "n_normal": 4, "lesion_empty": 1, "n_lesion": 10, "lesion_dice_sum": 7.0}
            for b in lg.BUDGETS
        ],  # fmt: skip
    }
    return {
        "candidate": candidate, "fold": fold, "seed": 0, "gate": {"min_area": 0.01, "min_confidence": 0.7},
        "gated": {**share, **cis}, "ungated": {**share, **cis}, "per_image": per_image, "separability": sep,
        "best_epoch": 19, "seconds_per_epoch": 40.0, "commit": "abc1234",
    }  # fmt: skip


def test_pooled_counts_every_validation_image_once() -> None:
    runs = [_run(0, _images(4, 3, 10, 1)), _run(1, _images(6, 3, 20, 0))]
    got = lg.pooled(runs, "gated")
    assert (got["n_normal"], got["n_lesion"]) == (10, 30)
    assert got["normal_left_empty"] == pytest.approx(6 / 10) and got["lesion_left_empty"] == pytest.approx(1 / 30)
    assert got["lesion_dice"] == pytest.approx((0.7 * 29) / 30)
    lo, hi = got["normal_left_empty_ci95"]
    assert lo < 0.6 < hi
    assert lg.pooled(runs, "ungated")["normal_left_empty"] == 0.0


def test_map_statistics_rank_a_confident_blob_above_a_weak_one() -> None:
    maps = np.zeros((2, 20, 20, 1), np.float32)
    maps[0, :4, :4] = 0.55
    maps[1, :10, :10] = 0.95
    stats = lg.map_statistics_of(maps)
    assert set(stats) == set(lg.STATISTICS)
    for values in stats.values():
        assert values[1] > values[0]


def test_markdown_has_a_row_per_run_and_the_pooled_and_sweep_tables() -> None:
    result = {
        "commands": ["python benchmarks/lesion_gate.py --folds 0 1"], "protocol": "p", "date": "2026-12-02",
        "cpu": {"model": "AMD EPYC", "cores": 2},
        "runs": [_run(0, _images(4, 3, 10, 1)), _run(1, _images(6, 3, 20, 0))],
    }  # fmt: skip
    text = lg.markdown(result)
    assert text.count("| baseline | 0 | 0 | 50.0% (40.0%-60.0%) |") == 1
    assert "| baseline | 0 | 0, 1 | 10 | 0.0% " in text  # pooled: 10 normal images, none empty ungated
    assert "normals 2/8, lesions 2/20, Dice 0.700" in text  # the budget sweep sums the folds
    assert "AUC 0.800, 50% at 90% specificity" in text
