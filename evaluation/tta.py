"""Flip test-time augmentation: the model's outputs on an image and its mirror, and the one rule that
combines them (:func:`combine_views`).

Evaluation, ``predict.py --tta`` (through any backend: a run folder, a SavedModel, a TF Serving server)
and so the figures of an exported model all use :func:`combine_views`, on each view's output after what
the run fitted (the lesion gate on a map, the temperature on class probabilities) has been applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf

from pipeline.dataset import build_dataset

if TYPE_CHECKING:
    from config.train import TrainConfig
    from data.discover import Case


def model_views(model: keras.Model, x, tta: bool, spatial: bool) -> list[np.ndarray]:
    """``[model(x)]`` as NumPy, and with ``tta`` the output for the left-right mirrored batch too.

    Args:
        model: A model taking ``(B, H, W, C)`` images.
        x: A batch of images.
        tta: Add the mirrored view.
        spatial: The output is a map in the image's frame (segmentation): the mirrored view's map is
            mirrored back. Otherwise (class probabilities) it is kept as it is.
    """
    # Keras's compiled predict step (traced once per model and batch shape family), not an eager call
    # that re-runs Python for every layer of every batch.
    out = [keras.ops.convert_to_numpy(model.predict_on_batch(x))]
    if tta:
        flipped = keras.ops.convert_to_numpy(model.predict_on_batch(tf.reverse(x, axis=[2])))
        out.append(flipped[:, :, ::-1] if spatial else flipped)
    return out


def combine_views(views: Sequence[np.ndarray], spatial: bool) -> np.ndarray:
    """The TTA rule: one answer per image from its views' outputs, each already gated or calibrated.

    Class probabilities are averaged. A lesion map is kept only if every view keeps a lesion: an image
    with a view whose map is all zeros (the lesion gate's "no lesion") gets an all-zero map; otherwise
    the views' maps are averaged.

    Args:
        views: One array per view, ``(B, ...)``, all in the original image's frame.
        spatial: The outputs are lesion maps (else class probabilities).
    """
    if len(views) == 1:
        return np.asarray(views[0])
    stacked = np.stack([np.asarray(v) for v in views])
    mean = stacked.mean(axis=0)
    if spatial:
        empty = ~(stacked.reshape(len(views), stacked.shape[1], -1) != 0).any(axis=-1).all(axis=0)
        mean[empty] = 0
    return mean


def predict_records(
    model: keras.Model, records: Sequence[Case], cfg: TrainConfig, task: str, tta: bool
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Images, targets (``task``'s: masks or one-hot labels) and the model's outputs, one array per view
    (:func:`model_views`), of ``records`` in record order, through the run's evaluation pipeline."""
    images, targets, views = [], [], []
    for x, y in build_dataset(records, task, cfg.pipeline(augment="none"), training=False):
        images.append(x.numpy())
        targets.append(y.numpy())
        views.append(model_views(model, x, tta, spatial=task == "seg"))
    return np.concatenate(images), np.concatenate(targets), [np.concatenate(v) for v in zip(*views, strict=True)]
