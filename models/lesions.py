"""The lesions of a segmenter's mask, in the same order in NumPy and in a serving graph.

A lesion is an 8-connected part of the mask (pixels at or above :data:`models.postprocess.MASK_THRESHOLD`),
found at the segmenter's resolution. At most :data:`MAX_LESIONS` are kept, the largest first (ties: the one
whose last pixel in raster order comes first, as ``--postprocess largest`` breaks them). Each is given by
its bounding box ``[y0, x0, y1, x1]`` in the mask's pixels, end exclusive; :func:`to_image` scales it to
the image's own pixels, where a lesion classifier's crop is cut (:mod:`pipeline.crop`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from scipy import ndimage

from models.postprocess import MASK_THRESHOLD, spread_max

MAX_LESIONS = 4
"""Lesions read per image: the largest ones (BUSI's images hold one or two)."""


def lesion_bounds_np(prob: np.ndarray, max_lesions: int = MAX_LESIONS) -> np.ndarray:
    """Bounding boxes ``(k, 4)`` (float) of the largest ``k <= max_lesions`` lesions of one map ``(H, W[, 1])``."""
    fg = np.asarray(prob).reshape(prob.shape[:2]) >= MASK_THRESHOLD
    labels, n = ndimage.label(fg, structure=np.ones((3, 3), bool))
    if n == 0:
        return np.zeros((0, 4))
    index = np.arange(1, n + 1)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    last = np.asarray(ndimage.maximum(np.arange(fg.size).reshape(fg.shape), labels, index=index))
    order = np.lexsort((last, -sizes))[:max_lesions]
    boxes = ndimage.find_objects(labels)
    return np.array([[boxes[i][0].start, boxes[i][1].start, boxes[i][0].stop, boxes[i][1].stop] for i in order], float)


def lesion_bounds_tf(probs: tf.Tensor, max_lesions: int = MAX_LESIONS) -> tuple[tf.Tensor, tf.Tensor]:
    """:func:`lesion_bounds_np` of maps ``(N, H, W)``: boxes ``(N, max_lesions, 4)``, and which hold a lesion."""
    shape = tf.shape(probs)
    n, h, w = shape[0], shape[1], shape[2]
    fg = probs >= MASK_THRESHOLD
    hw = h * w
    ids = tf.broadcast_to(tf.reshape(tf.range(1, hw + 1, dtype=tf.int32), tf.stack([1, h, w])), shape)
    labels = spread_max(ids, fg, diagonal=True)  # each lesion named by its last pixel's index + 1; 0: background
    segments = tf.reshape(labels + tf.range(n)[:, None, None] * (hw + 1), [-1])
    count = n * (hw + 1)
    rows = tf.reshape(tf.broadcast_to(tf.range(h)[None, :, None], shape), [-1])
    cols = tf.reshape(tf.broadcast_to(tf.range(w)[None, None, :], shape), [-1])
    sizes = tf.math.unsorted_segment_sum(tf.ones_like(segments, tf.int64), segments, count)
    bounds = tf.stack(
        [
            tf.math.unsorted_segment_min(rows, segments, count),
            tf.math.unsorted_segment_min(cols, segments, count),
            tf.math.unsorted_segment_max(rows, segments, count) + 1,
            tf.math.unsorted_segment_max(cols, segments, count) + 1,
        ],
        axis=-1,
    )
    sizes = tf.reshape(sizes, tf.stack([n, hw + 1])) * tf.concat([[0], tf.ones([hw], tf.int64)], 0)
    # largest first; among equal sizes the smaller label (the earlier last pixel); background last
    key = sizes * tf.cast(hw + 2, tf.int64) + tf.cast(hw + 1 - tf.range(hw + 1), tf.int64)[None]
    key = tf.where(sizes > 0, key, tf.zeros_like(key))
    top, index = tf.math.top_k(key, k=max_lesions)
    picked = tf.gather(tf.reshape(bounds, tf.stack([n, hw + 1, 4])), index, batch_dims=1)
    return tf.cast(picked, tf.float32), top > 0


def to_image(bounds: np.ndarray | tf.Tensor, mask_size: int, height, width):
    """Boxes in a ``mask_size`` square mask's pixels scaled to an image of ``height x width``."""
    scale = [height / mask_size, width / mask_size] * 2
    if isinstance(bounds, tf.Tensor):
        return bounds * tf.cast(tf.stack(scale), tf.float32)
    return np.asarray(bounds, float) * np.array(scale, float)
