"""The explain images' arithmetic: a lesion's map pasted where its crop lies, and drawn only where there is a map."""

from __future__ import annotations

import numpy as np

from inference.explain import heat_overlay, paste_max


def test_a_crops_map_is_pasted_into_its_window_clipped_to_the_image_keeping_the_larger_value() -> None:
    heat = np.full((10, 12), np.nan, np.float32)
    paste_max(heat, np.full((4, 4), 0.5, np.float32), np.array([-2.0, 8.0, 4.0, 14.0]))  # reaches outside
    inside = np.zeros((10, 12), bool)
    inside[0:4, 8:12] = True
    assert (np.isfinite(heat) == inside).all() and np.allclose(heat[inside], 0.5)
    ramp = np.tile(np.linspace(0, 1, 6, dtype=np.float32), (6, 1))  # 0 on the left, 1 on the right
    paste_max(heat, ramp, np.array([0.0, 6.0, 6.0, 12.0]))
    np.testing.assert_allclose(heat[5, 6:12], ramp[5])  # no map there before
    np.testing.assert_allclose(heat[1, 8:12], np.maximum(ramp[1, 2:], 0.5))  # the larger of the two
    assert np.isnan(heat[7, 3])


def test_the_heat_map_is_drawn_only_where_the_map_is_defined() -> None:
    image = np.full((8, 8, 1), 100, np.uint8)
    cam = np.full((8, 8), np.nan, np.float32)
    cam[2:5, 2:5] = 1.0
    out = heat_overlay(image, cam)
    assert out.shape == (8, 8, 3)
    outside = np.ones((8, 8), bool)
    outside[2:5, 2:5] = False
    assert (out[outside] == 100).all()  # untouched gray
    assert (out[2:5, 2:5] != 100).any(axis=-1).all()  # coloured
    whole = heat_overlay(image, np.ones((4, 4), np.float32))  # a model-size map covers the whole image
    assert (whole != 100).any(axis=-1).all()
