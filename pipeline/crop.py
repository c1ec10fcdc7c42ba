"""Square crops around a lesion, in-graph: the box from a mask, the context patch, and the crop a model reads.

A lesion classifier (``--crop lesion``) reads a square around the lesion, not the frame. The box is the
mask's bounding box made square on its longer side and widened by ``margin`` of that side on each side.
:func:`context_patch` cuts :data:`CONTEXT` times that square out of the native image (zeros outside the
frame) and resizes it once, antialiased, to :func:`context_size`; :func:`crop_patch` then reads the model's
input out of the patch with ``tf.image.crop_and_resize``: its centre square exactly, or, when training, a
square shifted and scaled by up to ``jitter``. The pipeline caches the patches, so the jitter costs no
re-decoding; evaluation, prediction and the exported diagnosis graph use these same functions.
"""

from __future__ import annotations

import tensorflow as tf

from pipeline.config import CROP_CONTEXT as CONTEXT
from pipeline.decode import resize_image

MIN_SIDE = 16.0
"""The smallest box side in native pixels (a lesion of a few pixels still gets a readable crop)."""


def context_size(size: int) -> int:
    """The context patch's side for a model input of ``size``: ``size * CONTEXT``, with an even border."""
    return size + 2 * round(size * (CONTEXT - 1) / 2)


def square_box(bounds: tf.Tensor, margin: float) -> tf.Tensor:
    """The square box ``[y0, x0, y1, x1]`` around ``bounds`` (a lesion's bounding box, same form, in pixels).

    Centred on ``bounds``, of side ``max(height, width) * (1 + 2 * margin)``, at least :data:`MIN_SIDE`.
    """
    bounds = tf.cast(bounds, tf.float32)
    centre = (bounds[:2] + bounds[2:]) / 2.0
    half = tf.maximum(tf.reduce_max(bounds[2:] - bounds[:2]) * (1.0 + 2.0 * margin), MIN_SIDE) / 2.0
    return tf.concat([centre - half, centre + half], 0)


def lesion_box(mask: tf.Tensor, margin: float) -> tf.Tensor:
    """The square box ``[y0, x0, y1, x1]`` (float32, native pixels, end exclusive) around ``mask``'s lesion.

    Args:
        mask: ``(H, W, 1)`` or ``(H, W)``, non-zero on the lesion.
        margin: Widening on each side, as a share of the square's side (0.1: 10%).

    Returns:
        :func:`square_box` of the mask's bounding box. An empty mask gives the square around the whole frame.
    """
    m = tf.reshape(tf.not_equal(mask, 0), tf.shape(mask)[:2])
    rows = tf.cast(tf.where(tf.reduce_any(m, axis=1))[:, 0], tf.float32)
    cols = tf.cast(tf.where(tf.reduce_any(m, axis=0))[:, 0], tf.float32)

    def found():
        lo = tf.stack([tf.reduce_min(rows), tf.reduce_min(cols)])
        return square_box(tf.concat([lo, tf.stack([tf.reduce_max(rows), tf.reduce_max(cols)]) + 1.0], 0), margin)

    def frame():
        hw = tf.cast(tf.shape(m), tf.float32)
        return square_box(tf.concat([tf.zeros([2]), hw], 0), 0.0)

    return tf.cond(tf.equal(tf.size(rows), 0), frame, found)


def context_patch(image: tf.Tensor, box: tf.Tensor, size: int, method: str = "bilinear") -> tf.Tensor:
    """:data:`CONTEXT` times ``box`` around its centre, cut from ``image`` (zeros outside it), resized.

    Args:
        image: float32 ``(H, W, C)`` in [0, 255], at its native size.
        box: From :func:`lesion_box`.
        size: The model's input side; the patch is :func:`context_size` of it.
        method: The pipeline's resize filter (:func:`pipeline.decode.resize_image`).

    Returns:
        float32 ``(context_size(size), context_size(size), C)``.
    """
    centre = (box[:2] + box[2:]) / 2.0
    side = tf.cast(tf.math.ceil((box[2] - box[0]) * CONTEXT), tf.int32)
    top_left = tf.cast(tf.math.floor(centre - tf.cast(side, tf.float32) / 2.0), tf.int32)
    hw = tf.shape(image)[:2]
    before = tf.maximum(-top_left, 0)
    after = tf.maximum(top_left + side - hw, 0)
    padded = tf.pad(image, tf.stack([tf.stack([before[0], after[0]]), tf.stack([before[1], after[1]]), [0, 0]]))
    start = top_left + before
    patch = padded[start[0] : start[0] + side, start[1] : start[1] + side]
    n = context_size(size)
    return tf.ensure_shape(resize_image(patch, n, method), [n, n, image.shape[-1]])


def crop_patch(
    patch: tf.Tensor, size: int, shift: tf.Tensor | None = None, scale: tf.Tensor | None = None
) -> tf.Tensor:
    """The model's ``size x size`` input read from a :func:`context_patch` (bilinear, zeros outside it).

    Args:
        patch: float32 ``(context_size(size), context_size(size), C)``.
        size: The model's input side.
        shift: ``(dy, dx)`` of the square's centre, as shares of its side (training jitter); None: centred.
        scale: The square's side over the box's (training jitter); None: 1.

    Returns:
        float32 ``(size, size, C)``; with no shift or scale, exactly the patch's centre square.
    """
    n = context_size(size)
    side = float(size) if scale is None else size * tf.cast(scale, tf.float32)
    centre = tf.fill([2], (n - 1) / 2.0) if shift is None else (n - 1) / 2.0 + tf.cast(shift, tf.float32) * size
    y0x0 = (centre - (side - 1.0) / 2.0) / (n - 1)
    y1x1 = (centre + (side - 1.0) / 2.0) / (n - 1)
    boxes = tf.reshape(tf.concat([y0x0, y1x1], 0), [1, 4])
    out = tf.image.crop_and_resize(patch[None], boxes, tf.zeros([1], tf.int32), [size, size], extrapolation_value=0.0)
    return tf.ensure_shape(out[0], [size, size, patch.shape[-1]])


def jitter_crop(patch: tf.Tensor, size: int, jitter: float, seed: tf.Tensor) -> tf.Tensor:
    """:func:`crop_patch` shifted by up to ``jitter`` of the side and scaled by ``1 +- jitter``, drawn from ``seed``.

    ``seed`` is a ``(2,)`` int tensor of a stateless draw (one per example).
    """
    draw = tf.random.stateless_uniform([3], seed=seed, minval=-jitter, maxval=jitter)
    return crop_patch(patch, size, shift=draw[:2], scale=1.0 + draw[2])


def crop_at(image: tf.Tensor, bounds: tf.Tensor, size: int, margin: float, method: str = "bilinear") -> tf.Tensor:
    """The model's ``size x size`` input for a lesion found elsewhere (a segmenter's): :func:`square_box` of its
    ``bounds`` (``[y0, x0, y1, x1]`` in ``image``'s pixels) with ``margin``, cut as training cuts it.

    ``image`` is float32 ``(H, W, C)`` at its native size.
    """
    return crop_patch(context_patch(image, square_box(bounds, margin), size, method), size)
