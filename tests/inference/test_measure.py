"""Lesion measurements on drawn shapes with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from inference.measure import _hull_points, measure_mask


def _disc(r: int, n: int = 200) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n]
    return (yy - n // 2) ** 2 + (xx - n // 2) ** 2 <= r * r


def _ellipse(ry: float, rx: float, n: int = 200) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n]
    return ((yy - n // 2) / ry) ** 2 + ((xx - n // 2) / rx) ** 2 <= 1


@pytest.mark.parametrize("r", [20, 40, 80])
def test_disc_area_diameters_and_roundness(r):
    m = measure_mask(_disc(r, n=2 * r + 40))
    assert m["n_components"] == 1
    assert m["area_px"] == pytest.approx(math.pi * r * r, rel=0.02)
    assert m["equivalent_diameter_px"] == pytest.approx(2 * r, rel=0.01)
    # Edge to edge over pixel squares: a disc of radius r spans 2r + 1 pixels.
    assert m["bbox_width_px"] == m["bbox_height_px"] == 2 * r + 1
    assert 2 * r + 1 <= m["longest_diameter_px"] <= 2 * r + 2
    assert m["perpendicular_diameter_px"] == pytest.approx(m["longest_diameter_px"], rel=0.02)
    assert m["circularity"] == pytest.approx(1.0, abs=0.03)
    assert 0.95 <= m["solidity"] <= 1.0  # the hull of pixel squares adds about half a pixel all round


def test_square_has_the_circularity_of_a_square_and_full_solidity():
    mask = np.zeros((60, 60), bool)
    mask[10:40, 10:40] = True
    m = measure_mask(mask)
    assert m["circularity"] == pytest.approx(math.pi / 4, abs=1e-6)  # 4 pi a^2 / (4a)^2
    assert m["solidity"] == 1.0
    assert m["longest_diameter_px"] == pytest.approx(30 * math.sqrt(2))  # the diagonal
    assert (m["bbox_x"], m["bbox_y"], m["bbox_width_px"], m["bbox_height_px"]) == (10, 10, 30, 30)


def test_l_shape_solidity_is_its_area_over_its_hull():
    mask = np.zeros((50, 50), bool)
    mask[10:40, 10:20] = True  # 30 x 10 bar
    mask[30:40, 20:40] = True  # 10 x 20 foot
    m = measure_mask(mask)
    # Hull of the pixel squares: the 30 x 30 box minus the triangle (20,10)-(40,10)-(40,30): 900 - 200.
    assert m["area_px"] == 500
    assert m["solidity"] == pytest.approx(500 / 700)


def test_ellipse_orientation_wider_than_tall_vs_taller_than_wide():
    wide = measure_mask(_ellipse(20, 60))
    tall = measure_mask(_ellipse(60, 20))
    assert wide["orientation"] == "parallel" and tall["orientation"] == "not parallel"
    assert wide["long_axis_angle_deg"] == pytest.approx(0, abs=2) or wide["long_axis_angle_deg"] > 178
    assert tall["long_axis_angle_deg"] == pytest.approx(90, abs=2)
    assert wide["longest_diameter_px"] == pytest.approx(121, abs=1.5)
    assert wide["perpendicular_diameter_px"] == pytest.approx(41, abs=1.5)
    assert 0.6 < wide["circularity"] < 0.85  # an ellipse of axis ratio 3 (exact value 0.68)


def test_two_blobs_are_two_components_and_shape_describes_the_largest():
    mask = np.zeros((100, 100), bool)
    mask[10:20, 10:20] = True  # 100 px
    mask[50:90, 40:70] = True  # 1200 px
    m = measure_mask(mask)
    assert m["n_components"] == 2
    assert m["area_px"] == 1300 and m["largest_area_px"] == 1200
    assert (m["bbox_width_px"], m["bbox_height_px"]) == (30, 40)
    assert m["orientation"] == "not parallel"


def test_diagonal_neighbours_are_one_component():
    mask = np.eye(5, dtype=bool)
    assert measure_mask(mask)["n_components"] == 1


def test_pixel_spacing_gives_millimetres():
    m = measure_mask(_disc(40), pixel_spacing=0.1)
    assert m["area_mm2"] == pytest.approx(m["area_px"] * 0.01)
    assert m["longest_diameter_mm"] == pytest.approx(m["longest_diameter_px"] * 0.1)
    assert m["equivalent_diameter_mm"] == pytest.approx(8.0, rel=0.01)
    assert "area_mm2" not in measure_mask(_disc(40))


def test_empty_mask_has_no_lesion_and_bad_input_raises():
    m = measure_mask(np.zeros((10, 10)), pixel_spacing=0.2)
    assert m["n_components"] == 0 and m["area_px"] == 0 and m["area_mm2"] == 0
    assert m["longest_diameter_px"] is None and m["longest_diameter_mm"] is None and m["orientation"] is None
    with pytest.raises(ValueError, match="2-D"):
        measure_mask(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="pixel_spacing"):
        measure_mask(np.ones((3, 3)), pixel_spacing=0)


def test_hull_points_are_the_unique_boundary_corners_in_row_order() -> None:
    """The integer-key deduplication gives exactly what ``np.unique(axis=0)`` of the corners gives."""
    rng = np.random.default_rng(1)
    for _ in range(50):
        shape = tuple(int(v) for v in rng.integers(5, 80, size=2))
        mask = ndimage.binary_dilation(rng.random(shape) > 0.97, iterations=int(rng.integers(1, 5)))
        ys, xs = np.nonzero(mask & ~ndimage.binary_erosion(mask))
        corners = np.array([(x + dx, y + dy) for x, y in zip(xs, ys, strict=True) for dx in (0, 1) for dy in (0, 1)])
        expected = np.unique(corners.reshape(-1, 2).astype(np.float64), axis=0)
        np.testing.assert_array_equal(_hull_points(mask), expected)
