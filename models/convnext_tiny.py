"""ConvNeXt-Tiny (Liu et al., 2022) from ``keras.applications`` with the shared head."""

from __future__ import annotations

import keras

from models.classifier import BACKBONE, assemble, check_channels, check_weights, load_weights_file
from models.registry import register


@register(
    "convnext_tiny", task="cls", cam_layer=BACKBONE
)  # Grad-CAM: the backbone's output, ConvNeXt-Tiny's last stage
def build_convnext_tiny(
    img_size: int,
    channels: int = 3,
    num_classes: int = 3,
    dropout: float = 0.2,
    weights: str = "none",
    input_norm: str = "fixed",
) -> keras.Model:
    """Build a ConvNeXt-Tiny classifier taking float32 RGB pixels in [0, 255].

    The backbone's own ImageNet normalization layer runs first (``include_preprocessing``).
    ConvNeXt uses layer norm, so there are no batch statistics to freeze.
    Arguments as :func:`models.resnet50.build_resnet50`.
    """
    check_channels(channels, "convnext_tiny")
    weights = check_weights(weights)
    backbone = keras.applications.ConvNeXtTiny(
        include_top=False,
        include_preprocessing=True,
        weights="imagenet" if weights == "imagenet" else None,
        input_shape=(img_size, img_size, 3),
        name=BACKBONE,
    )
    model = assemble(backbone, img_size, num_classes, dropout, "convnext_tiny", input_norm=input_norm)
    load_weights_file(model, weights)
    return model
