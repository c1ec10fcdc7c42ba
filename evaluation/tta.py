"""Flip test-time augmentation for evaluation: the model's output averaged over the image and its mirror.

``predict.py --tta`` does the same through its backends (a run folder or a SavedModel), on encoded images.
"""

from __future__ import annotations

import keras
import numpy as np


def predict_views(model: keras.Model, x, tta: bool, spatial: bool) -> np.ndarray:
    """``model(x)`` as NumPy, or with ``tta`` its mean with the output for the left-right mirrored batch.

    Args:
        model: A model taking ``(B, H, W, C)`` images.
        x: A batch of images.
        tta: Average over the two views.
        spatial: The output is a map in the image's frame (segmentation): the mirrored view's
            output is mirrored back before averaging. Otherwise (class probabilities) it is
            averaged as it is.
    """
    out = keras.ops.convert_to_numpy(model(x, training=False))
    if not tta:
        return out
    flipped = keras.ops.convert_to_numpy(model(keras.ops.flip(x, axis=2), training=False))
    return (out + (flipped[:, :, ::-1] if spatial else flipped)) / 2
