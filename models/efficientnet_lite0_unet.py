"""A U-Net decoder over the EfficientNet-Lite0 encoder: a segmenter, and with a class head the joint model.

The encoder (:func:`models.efficientnet_lite0.lite0_backbone`, nested as ``"backbone"`` so
``--weights imagenet`` and the frozen-backbone phase work as for the classifiers) gives its
deepest features (1/32) and four skips, the expansion activations of blocks 6a, 4a, 3a and
2a (1/16, 1/8, 1/4 and 1/2 of the input), the layers :mod:`models.efficientnet_b0_unet` reads
of EfficientNet-B0, whose decoder it shares: five up-samplings, concatenating the skips, each step
two 3x3 convolutions with instance (or batch) norm; then the U-Net's mask head.
"""

from __future__ import annotations

import keras
from keras import layers

from models.classifier import BACKBONE, backbone_batch_norm, check_channels, check_weights, load_weights_file
from models.efficientnet_b0_unet import DEPTH, SKIPS, efficientnet_decoder
from models.efficientnet_lite0 import lite0_backbone
from models.joint import joint_outputs
from models.normalize import scale_for_classifier
from models.registry import register
from models.unet import check_input_size, mask_output


def _encoder(img_size: int, weights: str) -> keras.Model:
    """Lite0 giving its deepest features and the skips (:data:`SKIPS`), batch norm frozen when pretrained
    (:func:`models.classifier.backbone_batch_norm`)."""
    network = backbone_batch_norm(lite0_backbone(img_size, weights, name="efficientnet_lite0"), weights == "imagenet")
    return keras.Model(network.inputs, [network.output, *(network.get_layer(n).output for n in SKIPS)], name=BACKBONE)


@register("efficientnet_lite0_unet", task="seg", joint=True, imagenet=True)
def build_efficientnet_lite0_unet(
    img_size: int,
    channels: int = 3,
    base_filters: int = 16,
    dropout: float = 0.1,
    norm: str = "instance",
    presence_head: bool = False,
    input_norm: str = "fixed",
    weights: str = "none",
    joint_classes: int = 0,
    consistency: float = 0.0,
) -> keras.Model:
    """Build the Lite0 U-Net taking float32 RGB pixels in [0, 255].

    Args:
        img_size: Side of the square input; a multiple of 32.
        channels: Must be 3 (gray images are repeated by the pipeline).
        base_filters: Filters of the last decoder step; each step up from the deepest has
            ``base_filters * 16, * 8, * 4, * 2, * 1``.
        dropout: Spatial dropout on the deepest features before the decoder; joint models: also dropout
            before the class head.
        norm: ``"instance"`` or ``"batch"`` normalization in the decoder.
        presence_head: Add an image-level lesion-presence logit (:func:`models.unet.mask_output`).
        input_norm: ``"fixed"`` or ``"image"`` (see :mod:`models.normalize`).
        weights: ``none``, ``imagenet`` (the encoder's, installed with the project, no download) or
            a ``.keras`` / ``.weights.h5`` file of this model.
        joint_classes: With more than 0, a joint model (:mod:`models.joint`) with a class head of this
            many classes on the deepest features, outputs ``{"mask", "label"}``.
        consistency: Joint models: weight of the heads' agreement penalty.

    Returns:
        A functional model mapping ``(B, S, S, 3)`` to a ``(B, S, S, 1)`` float32 lesion probability
        (or the joint output dict).

    Raises:
        ValueError: If ``img_size`` is not a multiple of 32, ``channels`` is not 3 or ``weights`` is bad.

    Example:
        >>> model = build_efficientnet_lite0_unet(img_size=128)
        >>> model.output_shape
        (None, 128, 128, 1)
    """
    check_channels(channels, "efficientnet_lite0_unet")
    check_input_size(img_size, DEPTH)
    weights = check_weights(weights)
    backbone = _encoder(img_size, weights)
    inputs = keras.Input((img_size, img_size, 3), name="image")
    x = scale_for_classifier(inputs, input_norm)
    deep, *skips = backbone(x)
    x = layers.SpatialDropout2D(dropout, name="deep_drop")(deep) if dropout > 0 else deep
    mask = mask_output(efficientnet_decoder(x, skips, base_filters, norm), deep, 1, presence_head)
    if joint_classes:
        outputs = joint_outputs(mask, deep, joint_classes, dropout, consistency)
        model = keras.Model(inputs, outputs, name="efficientnet_lite0_unet_joint")
    else:
        model = keras.Model(inputs, mask, name="efficientnet_lite0_unet")
    load_weights_file(model, weights)
    return model
