"""ResNet-50 (He et al., 2016) from ``keras.applications`` with the shared head."""

from __future__ import annotations

import keras

from models.classifier import BACKBONE, CaffePreprocess, assemble, check_channels, check_weights, load_weights_file
from models.registry import register


@register("resnet50", task="cls", cam_layer=BACKBONE)  # Grad-CAM: the backbone's output, ResNet-50's conv5_block3_out
def build_resnet50(
    img_size: int,
    channels: int = 3,
    num_classes: int = 3,
    dropout: float = 0.2,
    weights: str = "none",
    input_norm: str = "fixed",
) -> keras.Model:
    """Build a ResNet-50 classifier taking float32 RGB pixels in [0, 255].

    Args:
        img_size: Side of the square input (at least 32).
        channels: Must be 3.
        num_classes: Softmax outputs.
        dropout: Dropout before the last dense layer (0 disables).
        weights: ``none`` (random init), ``imagenet`` (backbone only; needs a download), or a
            ``.keras``/``.weights.h5`` file of this same model.
        input_norm: ``"fixed"`` or ``"image"`` (each image standardized first; see :mod:`models.normalize`).

    Returns:
        A model mapping ``(B, S, S, 3)`` to ``(B, num_classes)`` float32 probabilities.
    """
    check_channels(channels, "resnet50")
    weights = check_weights(weights)
    backbone = keras.applications.ResNet50(
        include_top=False,
        weights="imagenet" if weights == "imagenet" else None,
        input_shape=(img_size, img_size, 3),
        name=BACKBONE,
    )
    model = assemble(
        backbone, img_size, num_classes, dropout, "resnet50", CaffePreprocess(name="imagenet_norm"),
        frozen_bn=weights == "imagenet", input_norm=input_norm,
    )  # fmt: skip
    load_weights_file(model, weights)
    return model
