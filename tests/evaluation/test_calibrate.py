"""The fold's temperature: cross-fitted halves of whole patients, saved and read back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaluation.calibrate import fit_fold_temperature, group_halves
from evaluation.run_files import TEMPERATURE_FILE, load_fitted_temperature, save_temperature


def test_halves_keep_patients_together_and_alternate_within_each_class() -> None:
    labels = ["benign", "benign", "benign", "malignant", "malignant", "benign"]
    groups = ["p1", "p1", "p2", "p3", "p4", "p5"]
    np.testing.assert_array_equal(group_halves(labels, groups), [0, 0, 1, 0, 1, 0])


def test_fold_temperature_round_trips_and_scores_each_half_with_the_other(tmp_path) -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1, (60, 3))
    probs = np.exp(3 * z) / np.exp(3 * z).sum(1, keepdims=True)
    labels = rng.integers(0, 3, 60)
    ids = [f"c{i}" for i in range(60)]
    names = [("normal", "benign", "malignant")[k] for k in labels]
    fitted = fit_fold_temperature(ids, labels, probs, names, ids)
    (first, t0), (second, t1) = fitted.halves
    assert sorted(first + second) == sorted(ids) and not set(first) & set(second)
    assert t0 != t1 != fitted.temperature
    temps = fitted.for_cases([first[0], second[0], "other"])
    np.testing.assert_array_equal(temps, [t0, t1, fitted.temperature])
    save_temperature(tmp_path, fitted)
    assert load_fitted_temperature(tmp_path) == fitted
    assert load_fitted_temperature(tmp_path / "none") is None and load_fitted_temperature(None) is None


def test_a_broken_temperature_file_is_a_clear_error(tmp_path) -> None:
    (tmp_path / TEMPERATURE_FILE).write_text(json.dumps({"temperature": -1.0, "halves": []}))
    with pytest.raises(ValueError, match="not positive"):
        load_fitted_temperature(tmp_path)
    (tmp_path / TEMPERATURE_FILE).write_text(json.dumps({"t": 1.0}))
    with pytest.raises(ValueError, match="does not hold a temperature"):
        load_fitted_temperature(tmp_path)
