"""EfficientNet-B0 encoder with a U-Net decoder and a class head: a joint model (:mod:`models.joint`).

The encoder is ``keras.applications.EfficientNetB0`` (nested as ``"backbone"``, so
``--weights imagenet`` and the frozen-backbone phase work as for the classifier). The
decoder up-samples its deepest features (1/32) five times, concatenating the encoder's
features at 1/16, 1/8, 1/4 and 1/2 (the expansion activations of blocks 6a, 4a, 3a and
2a, as in segmentation_models' EfficientNet U-Net), each step two 3x3 convolutions with
instance (or batch) norm. The class head reads the deepest features, as the classifier's does.
"""

from __future__ import annotations

import keras
from keras import layers

from models.classifier import BACKBONE, backbone_batch_norm, check_channels, check_weights, load_weights_file
from models.joint import joint_outputs
from models.normalize import scale_for_classifier
from models.registry import register
from models.unet import check_input_size, conv_block, mask_output

SKIPS = (
    "block6a_expand_activation",
    "block4a_expand_activation",
    "block3a_expand_activation",
    "block2a_expand_activation",
)
"""Encoder features the decoder concatenates, deepest first (1/16, 1/8, 1/4, 1/2 of the input)."""
DEPTH = 5
"""Halvings from the input to the encoder's deepest features."""


def _backbone(img_size: int, weights: str) -> keras.Model:
    """EfficientNet-B0 without its top, giving its deepest features and the skips (:data:`SKIPS`), batch
    norm frozen when pretrained (:func:`models.classifier.backbone_batch_norm`)."""
    encoder = keras.applications.EfficientNetB0(
        include_top=False,
        weights="imagenet" if weights == "imagenet" else None,
        input_shape=(img_size, img_size, 3),
    )
    encoder = backbone_batch_norm(encoder, weights == "imagenet")
    return keras.Model(encoder.inputs, [encoder.output, *(encoder.get_layer(n).output for n in SKIPS)], name=BACKBONE)


def efficientnet_decoder(x, skips: list, base_filters: int, norm: str):
    """Up-sample :data:`DEPTH` times from the deepest features, joining the skips (:data:`SKIPS`'s order),
    each step two 3x3 convolutions with ``norm``; ``base_filters * 16, * 8, * 4, * 2, * 1`` filters."""
    for step in range(DEPTH):
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"dec{step}_up")(x)
        if step < len(skips):
            x = layers.Concatenate(name=f"dec{step}_concat")([x, skips[step]])
        x = conv_block(x, base_filters * 2 ** (DEPTH - 1 - step), 0.0, name=f"dec{step}", norm=norm)
    return x


@register("efficientnet_b0_unet", task="joint")
def build_efficientnet_b0_unet(
    img_size: int,
    channels: int = 3,
    base_filters: int = 16,
    dropout: float = 0.2,
    joint_classes: int = 3,
    norm: str = "instance",
    consistency: float = 0.0,
    input_norm: str = "fixed",
    weights: str = "none",
) -> keras.Model:
    """Build the joint EfficientNet-B0 U-Net taking float32 RGB pixels in [0, 255].

    Args:
        img_size: Side of the square input; a multiple of 32.
        channels: Must be 3 (gray images are repeated by the pipeline).
        base_filters: Filters of the last decoder step; each step up from the deepest has
            ``base_filters * 16, * 8, * 4, * 2, * 1``.
        dropout: Dropout before the class head's dense layer.
        joint_classes: Classes of the class head.
        norm: ``"instance"`` or ``"batch"`` normalization in the decoder.
        consistency: Weight of the heads' agreement penalty (:class:`models.joint.LesionAgreement`).
        input_norm: ``"fixed"`` or ``"image"`` (see :mod:`models.normalize`).
        weights: ``none``, ``imagenet`` (the encoder's, downloaded by Keras) or a ``.keras`` /
            ``.weights.h5`` file of this model.

    Returns:
        A functional model with outputs ``{"mask": (B, S, S, 1), "label": (B, joint_classes)}``, float32.

    Raises:
        ValueError: If ``img_size`` is not a multiple of 32, ``channels`` is not 3 or ``weights`` is bad.
    """
    check_channels(channels, "efficientnet_b0_unet")
    check_input_size(img_size, DEPTH)
    weights = check_weights(weights)
    backbone = _backbone(img_size, weights)
    inputs = keras.Input((img_size, img_size, 3), name="image")
    x = scale_for_classifier(inputs, input_norm)
    deep, *skips = backbone(x)
    mask = mask_output(efficientnet_decoder(deep, skips, base_filters, norm), deep, 1, False)
    model = keras.Model(
        inputs, joint_outputs(mask, deep, joint_classes, dropout, consistency), name="efficientnet_b0_unet"
    )
    load_weights_file(model, weights)
    return model
