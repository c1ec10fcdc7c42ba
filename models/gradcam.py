"""Grad-CAM (Selvaraju et al., ICCV 2017): where in the image a classifier found its class.

For class ``c``, the gradient of its score before the softmax (the ``logits``
layer, :data:`models.classifier.LOGITS`) with respect to the feature map ``A`` of
the model's last convolutional block (its registry entry's ``cam_layer``) is
averaged over space into one weight per channel; the map is
``ReLU(sum_k weight_k * A_k)``, scaled to [0, 1] per image (all 0 when nothing
speaks for the class) and resized bilinearly to the input. The model is not
changed: :func:`cam_model` re-wires the same layers (shared weights) so that one
call returns both the feature map and the scores.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from models.classifier import LOGITS


def cam_model(model: keras.Model, layer: str) -> keras.Model:
    """A model with ``model``'s layers and weights returning ``(feature map of layer, logits)``.

    Raises:
        ValueError: If ``model`` has no layer ``layer`` or no ``logits`` layer.
    """
    names = {lyr.name for lyr in model.layers}
    missing = [n for n in (layer, LOGITS) if n not in names]
    if missing:
        raise ValueError(f"Grad-CAM needs the layers {missing} in {model.name!r}; it has {sorted(names)}")
    captured: dict[str, keras.KerasTensor] = {}

    def call(lyr, *args, **kwargs):
        out = lyr(*args, **kwargs)
        if lyr.name in (layer, LOGITS):
            captured[lyr.name] = out
        return out

    clone = keras.models.clone_model(model, clone_function=lambda lyr: lyr, call_function=call)
    return keras.Model(clone.inputs, [captured[layer], captured[LOGITS]], name=f"{model.name}_cam")


def grad_cam(
    cam: keras.Model, images: np.ndarray, class_ids: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grad-CAM maps of ``images`` ``(N, H, W, C)`` for ``class_ids`` (default: each image's predicted class).

    Args:
        cam: :func:`cam_model` of the classifier.
        images: Pixels as the classifier takes them.
        class_ids: Class explained for each image.

    Returns:
        ``(maps (N, H, W) in [0, 1], class_ids (N,), probabilities (N, K))``.
    """
    x = tf.convert_to_tensor(images, tf.float32)
    with tf.GradientTape() as tape:
        features, logits = cam(x, training=False)
        logits = tf.cast(logits, tf.float32)
        if class_ids is None:
            class_ids = keras.ops.convert_to_numpy(keras.ops.argmax(logits, axis=-1))
        score = tf.gather(logits, np.asarray(class_ids, dtype=np.int64), axis=1, batch_dims=1)
    grads = tf.cast(tape.gradient(score, features), tf.float32)
    features = tf.cast(features, tf.float32)
    weights = keras.ops.mean(grads, axis=(1, 2), keepdims=True)
    maps = keras.ops.relu(keras.ops.sum(weights * features, axis=-1))
    peak = keras.ops.max(maps, axis=(1, 2), keepdims=True)
    maps = keras.ops.where(peak > 0, maps / keras.ops.maximum(peak, 1e-12), 0.0)
    maps = keras.ops.image.resize(maps[..., None], images.shape[1:3], interpolation="bilinear")[..., 0]
    probs = keras.ops.softmax(logits, axis=-1)
    return (
        np.clip(keras.ops.convert_to_numpy(maps), 0.0, 1.0),
        np.asarray(class_ids),
        keras.ops.convert_to_numpy(probs),
    )
