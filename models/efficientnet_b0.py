"""EfficientNet-B0 (Tan and Le, 2019) from ``keras.applications`` with the shared head."""

from __future__ import annotations

import keras

from models.classifier import BACKBONE, assemble, check_channels, check_weights, load_weights_file
from models.registry import register


@register(
    "efficientnet_b0", task="cls", cam_layer=BACKBONE
)  # Grad-CAM: the backbone's output, EfficientNet-B0's top_activation (1x1 conv to 1280 channels, batch norm, swish)
def build_efficientnet_b0(
    img_size: int,
    channels: int = 3,
    num_classes: int = 3,
    dropout: float = 0.2,
    weights: str = "none",
    input_norm: str = "fixed",
) -> keras.Model:
    """Build an EfficientNet-B0 classifier taking float32 RGB pixels in [0, 255].

    The backbone's own rescaling and ImageNet normalization layers run first.
    Arguments as :func:`models.resnet50.build_resnet50`.
    """
    check_channels(channels, "efficientnet_b0")
    weights = check_weights(weights)
    backbone = keras.applications.EfficientNetB0(
        include_top=False,
        weights="imagenet" if weights == "imagenet" else None,
        input_shape=(img_size, img_size, 3),
        name=BACKBONE,
    )
    model = assemble(
        backbone,
        img_size,
        num_classes,
        dropout,
        "efficientnet_b0",
        frozen_bn=weights == "imagenet",
        input_norm=input_norm,
    )
    load_weights_file(model, weights)
    return model
