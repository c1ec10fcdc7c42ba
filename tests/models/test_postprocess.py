"""The lesion gate: the NumPy and TensorFlow rules agree, and a gated map is all zeros."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from models.postprocess import GATE_FILE, NO_GATE, LesionGate, load_gate, map_statistics


def _maps() -> np.ndarray:
    """Eight 16x16 maps: empty, a weak small blob, a confident large one, and random ones."""
    rng = np.random.default_rng(0)
    maps = rng.uniform(0, 1, (8, 16, 16)).astype(np.float32) ** 3
    maps[0] = 0.0
    maps[1] = 0.0
    maps[1, 2:4, 2:4] = 0.55  # 4 pixels, confidence 0.55
    maps[2] = 0.0
    maps[2, 4:12, 4:12] = 0.95  # 64 pixels, confidence 0.95
    return maps


def test_map_statistics_are_area_share_and_mean_probability_inside() -> None:
    area, confidence = map_statistics(_maps()[:3])
    np.testing.assert_allclose(area, [0.0, 4 / 256, 64 / 256])
    np.testing.assert_allclose(confidence, [0.0, 0.55, 0.95], rtol=1e-6)


@pytest.mark.parametrize("gate", [NO_GATE, LesionGate(0.02, 0.0), LesionGate(0.0, 0.6), LesionGate(0.05, 0.7)])
def test_numpy_and_tensorflow_rules_agree(gate: LesionGate) -> None:
    maps = _maps()
    np.testing.assert_array_equal(gate.present_np(maps), gate.present_tf(tf.constant(maps)).numpy())
    np.testing.assert_array_equal(gate.apply_np(maps), gate.apply_tf(tf.constant(maps)).numpy())
    np.testing.assert_array_equal(gate.apply_np(maps[..., None])[..., 0], gate.apply_np(maps))  # (N, H, W, 1) too


def test_gate_empties_weak_maps_and_keeps_confident_ones() -> None:
    maps = _maps()
    np.testing.assert_array_equal(LesionGate(0.0, 0.6).present_np(maps[:3]), [False, False, True])
    np.testing.assert_array_equal(LesionGate(0.05, 0.0).present_np(maps[:3]), [False, False, True])
    np.testing.assert_array_equal(NO_GATE.present_np(maps[:3]), [False, True, True])  # only empty maps are empty
    gated = LesionGate(0.0, 0.6).apply_np(maps)
    assert not gated[1].any() and (gated[2] == maps[2]).all()


def test_thresholds_outside_their_range_raise() -> None:
    with pytest.raises(ValueError, match="min_area"):
        LesionGate(min_area=1.5)
    with pytest.raises(ValueError, match="min_confidence"):
        LesionGate(min_confidence=-0.1)


def test_load_gate_reads_the_run_file_and_defaults_to_no_gate(tmp_path) -> None:
    assert load_gate(tmp_path) == NO_GATE  # a run from before the gate
    (tmp_path / GATE_FILE).write_text(json.dumps({"gate": {"min_area": 0.01, "min_confidence": 0.7}}))
    assert load_gate(tmp_path) == LesionGate(0.01, 0.7)
    (tmp_path / GATE_FILE).write_text(json.dumps({"thresholds": [1, 2]}))
    with pytest.raises(ValueError, match=f"{GATE_FILE} does not hold a lesion gate"):
        load_gate(tmp_path)
