"""Size and shape of a predicted lesion, as a radiologist reads them.

Connected components use 8-connectivity. ``area`` counts every lesion pixel; the
other size and shape descriptors describe the largest component (the lesion).
Lengths run edge to edge over pixel squares (a lesion 10 pixels across is 10
pixels long). Orientation follows BI-RADS: ``parallel`` (wider than tall, long
axis along the skin line) or ``not parallel`` (taller than wide), from the
horizontal and vertical extents. Circularity is ``4 pi area / perimeter^2`` of
the lesion's outline after removing the pixel staircase (1 for a disc, 0.785
for a square); solidity is the pixel area over the convex hull's area.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from core.errors import OptionError

# Outline simplification tolerance, in pixels: removes the staircase of a
# rasterized edge, whose length would otherwise inflate the perimeter by ~10%.
_OUTLINE_TOLERANCE = 1.0
LENGTH_KEYS = (
    "equivalent_diameter",
    "bbox_width",
    "bbox_height",
    "longest_diameter",
    "perpendicular_diameter",
)


def _hull_points(component: np.ndarray) -> np.ndarray:
    """Corners of the component's boundary pixels, ``(K, 2)`` as (x, y)."""
    eroded = ndimage.binary_erosion(component)
    ys, xs = np.nonzero(component & ~eroded)
    x = np.concatenate([xs + dx for dx in (0, 1) for dy in (0, 1)]).astype(np.int64)
    y = np.concatenate([ys + dy for dx in (0, 1) for dy in (0, 1)]).astype(np.int64)
    # Unique corners in (x, y) lexicographic order, as np.unique(axis=0) gives them, from one integer key
    # per point: several times faster than sorting the rows.
    rows = component.shape[0] + 1
    keys = np.unique(x * rows + y)
    return np.stack([keys // rows, keys % rows], axis=1).astype(np.float64)


def _feret(points: np.ndarray) -> tuple[float, float, float, float]:
    """Longest diameter, the extent perpendicular to it, its angle (degrees) and the hull's area."""
    try:
        hull = ConvexHull(points)
        verts, hull_area = points[hull.vertices], float(hull.volume)
    except QhullError:  # collinear points: a one-pixel-wide line has no 2-D hull
        verts, hull_area = points, 0.0
    diff = verts[:, None, :] - verts[None, :, :]
    d2 = (diff**2).sum(-1)
    i, j = np.unravel_index(int(np.argmax(d2)), d2.shape)
    longest = math.sqrt(float(d2[i, j]))
    axis = (verts[j] - verts[i]) / longest
    normal = np.array([-axis[1], axis[0]])
    proj = verts @ normal
    # Image y points down; report the angle as seen on screen, counter-clockwise from horizontal.
    angle = math.degrees(math.atan2(-axis[1], axis[0])) % 180.0
    return longest, float(proj.max() - proj.min()), angle, hull_area


def _circularity(component: np.ndarray) -> float | None:
    contours, _ = cv2.findContours(component.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    outline = cv2.approxPolyDP(max(contours, key=cv2.contourArea), _OUTLINE_TOLERANCE, True)
    perimeter = cv2.arcLength(outline, True)
    if perimeter == 0:  # a single pixel has no outline to measure
        return None
    return min(1.0, 4 * math.pi * cv2.contourArea(outline) / perimeter**2)


def _largest_component(labels: np.ndarray) -> dict[str, Any]:
    """Size, box, diameters, orientation and shape of the largest component of a labelled mask."""
    sizes = np.bincount(labels.ravel())[1:]
    component = labels == (int(np.argmax(sizes)) + 1)
    area = int(sizes.max())
    ys, xs = np.nonzero(component)
    width, height = int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)
    longest, perpendicular, angle, hull_area = _feret(_hull_points(component))
    return dict(
        largest_area_px=area,
        equivalent_diameter_px=2 * math.sqrt(area / math.pi),
        bbox_x=int(xs.min()),
        bbox_y=int(ys.min()),
        bbox_width_px=width,
        bbox_height_px=height,
        longest_diameter_px=longest,
        perpendicular_diameter_px=perpendicular,
        long_axis_angle_deg=angle,
        orientation="parallel" if width >= height else "not parallel",
        circularity=_circularity(component),
        solidity=min(1.0, area / hull_area) if hull_area > 0 else 1.0,
    )


def measure_mask(mask: np.ndarray, pixel_spacing: float | None = None) -> dict[str, Any]:
    """Measure the lesion in a binary mask.

    Args:
        mask: ``(H, W)`` array, lesion where nonzero.
        pixel_spacing: Millimetres per pixel (square pixels); adds ``*_mm`` and ``area_mm2``.

    Returns:
        ``n_components``, ``area_px`` (all lesion pixels), and for the largest
        component: ``largest_area_px``, ``equivalent_diameter_px``, ``bbox_x``,
        ``bbox_y``, ``bbox_width_px``, ``bbox_height_px``, ``longest_diameter_px``,
        ``perpendicular_diameter_px``, ``long_axis_angle_deg``, ``orientation``,
        ``circularity``, ``solidity``. An empty mask gives 0 components and None
        for the rest.

    Raises:
        ValueError: If ``mask`` is not 2-D or ``pixel_spacing`` is not positive.
    """
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.ndim != 2:
        raise ValueError(f"`mask` must be 2-D (H, W). Received shape {mask.shape}")
    if pixel_spacing is not None and not pixel_spacing > 0:
        raise OptionError(f"`pixel_spacing` must be positive millimetres. Received: {pixel_spacing}")
    binary = mask > 0
    labels, n = ndimage.label(binary, structure=np.ones((3, 3), bool))
    out: dict[str, Any] = {"n_components": int(n), "area_px": int(binary.sum())}
    keys = [
        "largest_area_px", "equivalent_diameter_px", "bbox_x", "bbox_y", "bbox_width_px", "bbox_height_px",
        "longest_diameter_px", "perpendicular_diameter_px", "long_axis_angle_deg", "orientation",
        "circularity", "solidity",
    ]  # fmt: skip
    if n == 0:
        out.update(dict.fromkeys(keys))
    else:
        out.update(_largest_component(labels))
    if pixel_spacing is not None:
        out["pixel_spacing_mm"] = float(pixel_spacing)
        out["area_mm2"] = out["area_px"] * pixel_spacing**2
        out["largest_area_mm2"] = None if n == 0 else out["largest_area_px"] * pixel_spacing**2
        for k in LENGTH_KEYS:
            v = out[f"{k}_px"]
            out[f"{k}_mm"] = None if v is None else v * pixel_spacing
    return out
