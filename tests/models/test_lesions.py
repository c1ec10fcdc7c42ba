"""A mask's lesions: the same boxes in the same order from NumPy and from the serving graph's TensorFlow."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from models.lesions import MAX_LESIONS, lesion_bounds_np, lesion_bounds_tf, to_image


def test_lesions_are_boxed_largest_first() -> None:
    m = np.zeros((20, 30), np.float32)
    m[2:5, 2:6] = 0.9  # 12 pixels
    m[5, 6] = 0.6  # diagonal neighbour: the same lesion, 13 pixels
    m[10:15, 20:28] = 0.8  # 40 pixels
    m[18, 0] = 0.49  # below the threshold: no lesion
    np.testing.assert_array_equal(lesion_bounds_np(m), [[10, 20, 15, 28], [2, 2, 6, 7]])
    assert lesion_bounds_np(np.zeros((8, 8))).shape == (0, 4)
    assert lesion_bounds_np(m, max_lesions=1).tolist() == [[10, 20, 15, 28]]
    np.testing.assert_allclose(
        to_image(np.array([[10, 20, 15, 28]]), 20, 100, 60), [[50, 60, 75, 84]]
    )  # 5x down, 3x across


def test_tensorflow_finds_the_same_lesions_in_the_same_order() -> None:
    rng = np.random.default_rng(0)
    maps = (rng.random((24, 16, 16)) > 0.7).astype(np.float32)  # many small lesions, many ties
    maps[0] = 0  # none
    maps[1] = 0
    maps[1, 3:5, 3:5] = maps[1, 10:12, 10:12] = 1  # two of the same size: the earlier last pixel first
    boxes, valid = lesion_bounds_tf(tf.constant(maps))
    assert boxes.shape == (24, MAX_LESIONS, 4)
    for prob, b, v in zip(maps, boxes.numpy(), valid.numpy(), strict=True):
        expected = lesion_bounds_np(prob)
        assert v.sum() == len(expected)
        np.testing.assert_array_equal(b[v], expected)
    np.testing.assert_array_equal(boxes.numpy()[1, :2], [[3, 3, 5, 5], [10, 10, 12, 12]])
