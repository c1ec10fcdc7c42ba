"""Freeze a model's encoder but not its normalization: the first phase of adapting a run to a new site.

The encoder is the nested ``"backbone"`` of the classifiers and of the ImageNet-encoder segmenters
(:data:`models.classifier.BACKBONE`), or the U-Net family's ``enc*`` and ``bottleneck*`` layers
(:mod:`models.unet`, :mod:`models.resunet`). Normalization layers keep their own flag either way:
a new scanner's contrast is what they absorb, and a pretrained backbone's frozen batch statistics
(:func:`models.classifier.freeze_batch_norm`) stay frozen.
"""

from __future__ import annotations

import keras

from core.errors import OptionError
from models.classifier import BACKBONE

ENCODER_PREFIXES = ("enc", "bottleneck")
"""Names of the U-Net family's encoder layers (levels ``enc0``... and the bottleneck)."""
NORMALIZATION = (
    keras.layers.BatchNormalization,
    keras.layers.GroupNormalization,
    keras.layers.LayerNormalization,
)


def _leaves(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    subs = getattr(layer, "layers", None)
    return [leaf for sub in subs for leaf in _leaves(sub)] if subs else [layer]


def encoder_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The encoder's layers with weights of their own, normalization left out.

    Raises:
        OptionError: If the model has neither a ``"backbone"`` nor ``enc``/``bottleneck`` layers.
    """
    names = [layer.name for layer in model.layers]
    tops = [model.get_layer(BACKBONE)] if BACKBONE in names else [
        layer for layer in model.layers if layer.name.startswith(ENCODER_PREFIXES)
    ]  # fmt: skip
    if not tops:
        raise OptionError(f"{model.name} has no encoder to freeze (no '{BACKBONE}', no enc*/bottleneck* layers)")
    leaves = [leaf for top in tops for leaf in _leaves(top)]
    return [leaf for leaf in leaves if leaf.weights and not isinstance(leaf, NORMALIZATION)]


def set_encoder_trainable(model: keras.Model, trainable: bool) -> int:
    """Set the encoder's layers (normalization left as it is) trainable or frozen; return how many."""
    layers = encoder_layers(model)
    for layer in layers:
        layer.trainable = trainable
    return len(layers)
