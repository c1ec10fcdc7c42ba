"""Post-processing: the lesion gate and the largest lesion; the NumPy and TensorFlow rules agree."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from models.postprocess import (
    GATE_FILE,
    NO_GATE,
    LesionGate,
    load_gate,
    map_statistics,
    postprocess_np,
    postprocess_tf,
)


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


def _planted() -> np.ndarray:
    """A 20x20 map: a ring lesion (0.9) around a hole (0.1), and a speck (0.8) in a corner."""
    m = np.zeros((1, 20, 20), np.float32)
    m[0, 4:15, 4:15] = 0.9
    m[0, 7:11, 7:11] = 0.1
    m[0, 1, 1] = 0.8
    return m


def test_largest_removes_a_speck_and_fills_a_hole() -> None:
    m = _planted()
    out = postprocess_np(m, "largest")
    assert out[0, 1, 1] == 0.0  # the speck is gone
    assert (out[0, 4:15, 4:15] >= 0.5).all()  # the hole is lesion now, at the threshold
    np.testing.assert_array_equal(out[0, 7:11, 7:11], 0.5)
    np.testing.assert_array_equal(out[0, 4:7, 4:15], np.float32(0.9))  # the lesion keeps its probabilities
    assert (out >= 0.5).sum() == 121
    np.testing.assert_array_equal(postprocess_np(m[..., None], "largest")[..., 0], out)  # (N, H, W, 1) too
    np.testing.assert_array_equal(postprocess_np(m, "none"), m)


def test_a_notch_open_to_the_border_is_not_a_hole() -> None:
    m = np.zeros((1, 12, 12), np.float32)
    m[0, 2:10, 0:8] = 0.9
    m[0, 4:6, 0:5] = 0.0  # a notch reaching the left border
    out = postprocess_np(m, "largest")
    np.testing.assert_array_equal(out, m)
    np.testing.assert_array_equal(postprocess_tf(tf.constant(m), "largest").numpy(), m)


def test_largest_numpy_and_tensorflow_agree_with_ties_and_empty_maps() -> None:
    rng = np.random.default_rng(1)
    maps = (rng.random((12, 20, 20)) > 0.55) * rng.uniform(0.5, 1.0, (12, 20, 20))
    maps = maps.astype(np.float32)
    maps[0] = 0.0  # empty stays empty
    maps[1] = 0.0
    maps[1, 2:4, 2:4] = 0.7
    maps[1, 10:12, 10:12] = 0.8  # two lesions of 4 pixels: the first (by its last pixel) wins
    maps[2] = _planted()[0]
    expected = postprocess_np(maps, "largest")
    assert expected[0].max() == 0.0 and expected[1, 2, 2] == 0.7 and expected[1, 10, 10] == 0.0
    np.testing.assert_array_equal(postprocess_tf(tf.constant(maps), "largest").numpy(), expected)


def test_unknown_postprocess_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"`--postprocess` must be one of \['none', 'largest'\]"):
        postprocess_np(_planted(), "biggest")
