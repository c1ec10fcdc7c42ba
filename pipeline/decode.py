"""In-graph decoding, channel conversion and resizing, shared by the pipeline and export.

PNG and JPEG are decoded by TensorFlow's own decoders, which follow the data
layer's pixel rules (``data/imageio.py``) exactly for PNG in every mode: 1-bit
as 0/255, 16-bit by the high byte, palette expanded, alpha dropped. JPEG
decoders differ from Pillow's by a few levels, so training decodes JPEG here
too and an exported model sees the same pixels. TensorFlow cannot decode
1-bit or palette BMP files, so BMP goes through the data layer's reader.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from data.imageio import read_image

_GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)  # ITU-R BT.601, as data.imageio.to_gray


def decode_image_bytes(contents: tf.Tensor) -> tf.Tensor:
    """Decode encoded PNG/JPEG/BMP bytes to ``uint8`` ``(H, W, 1|3)``, alpha dropped.

    Works inside a graph (TF Serving). BMP must be 24 or 32 bit here.
    """
    img = tf.io.decode_image(contents, channels=0, dtype=tf.uint8, expand_animations=False)
    c = tf.shape(img)[-1]
    # 2 channels = gray + alpha, 4 = RGB + alpha: keep the colour channels.
    img = tf.cond(tf.logical_or(tf.equal(c, 2), tf.equal(c, 4)), lambda: img[:, :, : c - 1], lambda: img)
    return tf.ensure_shape(img, [None, None, None])


def _read_with_pillow(path: bytes | np.ndarray) -> np.ndarray:
    raw = path.item() if isinstance(path, np.ndarray) else path  # eager passes a 0-d array
    return read_image(raw.decode())


def decode_image_file(path: tf.Tensor) -> tf.Tensor:
    """Read and decode an image file; BMP via the data layer, the rest in-graph."""
    is_bmp = tf.strings.regex_full_match(tf.strings.lower(path), r".*\.bmp")
    return tf.cond(
        is_bmp,
        lambda: tf.ensure_shape(
            tf.numpy_function(_read_with_pillow, [path], tf.uint8, stateful=False),
            [None, None, None],
        ),
        lambda: decode_image_bytes(tf.io.read_file(path)),
    )


def to_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
    """Convert ``(H, W, 1|3)`` to ``channels`` (gray is repeated, colour is BT.601 luma)."""
    image = tf.cast(image, tf.float32)
    c = tf.shape(image)[-1]
    if channels == 3:
        out = tf.cond(tf.equal(c, 1), lambda: tf.tile(image, [1, 1, 3]), lambda: image)
    elif channels == 1:
        weights = tf.constant(_GRAY_WEIGHTS, tf.float32)
        out = tf.cond(
            tf.equal(c, 3),
            lambda: tf.reduce_sum(image * weights, axis=-1, keepdims=True),
            lambda: image,
        )
    else:
        raise ValueError(f"`channels` must be 1 or 3. Received: channels={channels}")
    return tf.ensure_shape(out, [None, None, channels])


def resize_image(image: tf.Tensor, size: int, method: str = "bilinear") -> tf.Tensor:
    """Resize a float image to ``size x size``, values kept in [0, 255]."""
    if method == "bilinear":
        out = tf.image.resize(image, [size, size], method="bilinear", antialias=True)
    else:
        out = tf.image.resize(image, [size, size], method="area")
    return tf.clip_by_value(out, 0.0, 255.0)


def preprocess(contents_or_image: tf.Tensor, size: int, channels: int, method: str) -> tf.Tensor:
    """Decoded ``uint8`` image -> float32 ``(size, size, channels)`` in [0, 255]."""
    return resize_image(to_channels(contents_or_image, channels), size, method)


def binarize_mask_bytes(contents: tf.Tensor) -> tf.Tensor:
    """Decode a PNG/JPEG mask to ``uint8`` ``(H, W, 1)`` of 0/1 by the data layer's rule.

    Alpha is composited over black, colour channels are reduced by their maximum,
    and a pixel is lesion when it exceeds half of the mask's largest value.
    """
    raw = tf.io.decode_image(contents, channels=0, dtype=tf.uint8, expand_animations=False)
    x = tf.cast(raw, tf.int32)
    c = tf.shape(x)[-1]
    has_alpha = tf.logical_or(tf.equal(c, 2), tf.equal(c, 4))
    x = tf.cond(has_alpha, lambda: x[:, :, : c - 1] * x[:, :, c - 1 :] // 255, lambda: x)
    levels = tf.reduce_max(x, axis=-1, keepdims=True)
    top = tf.reduce_max(levels)
    return tf.cast(tf.logical_and(levels * 2 > top, top > 0), tf.uint8)


def merge_mask_files(paths: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """OR-merge PNG/JPEG mask files into ``uint8`` ``(height, width, 1)``; none gives zeros.

    Raises:
        tf.errors.InvalidArgumentError: If a mask's size differs from ``(height, width)``
            (the message names the file).
    """

    def body(i, acc):
        m = tf.ensure_shape(binarize_mask_bytes(tf.io.read_file(paths[i])), [None, None, 1])
        # The data layer reports such masks before training; callers that skip it get the file named here.
        same = tf.reduce_all(tf.equal(tf.shape(m)[:2], tf.stack([height, width])))
        check = tf.debugging.Assert(same, ["mask size differs from its image:", paths[i], tf.shape(m)[:2]])
        with tf.control_dependencies([check]):
            return i + 1, tf.maximum(acc, m)

    zeros = tf.zeros(tf.stack([height, width, 1]), tf.uint8)
    _, merged = tf.while_loop(
        lambda i, _: i < tf.size(paths),
        body,
        [tf.constant(0), zeros],
        shape_invariants=[tf.TensorShape([]), tf.TensorShape([None, None, 1])],
    )
    return merged


def resize_mask(mask: tf.Tensor, size: int) -> tf.Tensor:
    """Resize a 0/1 mask ``(H, W, 1)`` with nearest neighbour; it stays exactly 0/1."""
    return tf.image.resize(mask, [size, size], method="nearest")
