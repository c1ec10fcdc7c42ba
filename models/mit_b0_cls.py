"""MiT-B0 classifier: keras-hub's Mix Transformer encoder (SegFormer's) with the shared head.

The hierarchical encoder keeps convolution-like inductive biases (overlapping patch
embeddings, a feature pyramid down to 1/32), which may suit 780 images better than a plain
ViT; :mod:`models.deit_tiny` is the plain-ViT alternative. Its deepest map (256 channels
at 1/32) goes through the classifiers' head (:func:`models.classifier.assemble`).
"""

from __future__ import annotations

import keras

from models.classifier import BACKBONE, assemble, check_channels
from models.hub import check_hub_weights, imagenet_normalization, load_hub_weights, mit_encoder
from models.registry import register


@register(
    "mit_b0_cls", task="cls", cam_layer=BACKBONE, hub=True, options=("drop_path",)
)  # Grad-CAM: the encoder's 1/32 map
def build_mit_b0_cls(
    img_size: int,
    channels: int = 3,
    num_classes: int = 3,
    dropout: float = 0.2,
    weights: str = "none",
    input_norm: str = "fixed",
    drop_path: float = 0.1,
) -> keras.Model:
    """Build an MiT-B0 classifier taking float32 RGB pixels in [0, 255].

    Args:
        img_size: Side of the square input; a multiple of 32.
        weights: ``none``, a keras-hub MiT or SegFormer preset (its encoder), or a
            ``.keras`` / ``.weights.h5`` file of this model (see :mod:`models.hub`).
        drop_path: Stochastic depth rate of the last encoder block.
        Others as :func:`models.resnet50.build_resnet50`.

    Raises:
        ValueError: If ``img_size`` is not a multiple of 32, ``channels`` is not 3, or the
            preset is of another architecture.
    """
    check_channels(channels, "mit_b0_cls")
    weights = check_hub_weights(weights, "mit_b0_cls", "mit_b0_ade20k_512")
    backbone = mit_encoder("b0", img_size, drop_path, "mit_b0_cls")
    backbone.name = BACKBONE
    model = assemble(
        backbone,
        img_size,
        num_classes,
        dropout,
        "mit_b0_cls",
        preprocess=imagenet_normalization(),
        input_norm=input_norm,
    )
    load_hub_weights(model, backbone, weights, "mit_b0_cls")
    return model
