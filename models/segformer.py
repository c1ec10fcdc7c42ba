"""SegFormer (Xie et al., 2021): keras-hub's Mix Transformer encoder with the all-MLP decoder.

The encoder is ``keras_hub.models.MiTBackbone`` (B0 or B1, see :data:`models.hub.MIT_VARIANTS`),
wrapped as a layer named ``"backbone"`` (:class:`models.hub.MiTPyramid`; ``--freeze-epochs``
finds it by name) that returns its four feature maps (1/4 to 1/32 of the input). The decoder is the one of
keras-hub's ``SegFormerBackbone`` and ``SegFormerImageSegmenter``, layer for layer: a
``Dense`` projection of each level, bilinear resizing to 1/4, concatenation (deepest
first), a 1x1 convolution with batch norm and ReLU, dropout and a 1x1 convolution to the
lesion logit, resized bilinearly to the input and passed through a float32 sigmoid. It is
written out here, rather than nesting ``SegFormerBackbone``, so the joint class head and
the presence head can read the deepest encoder features. A SegFormer preset fills both
the encoder and this decoder; an MiT preset only the encoder.
"""

from __future__ import annotations

import keras
from keras import layers

from models.classifier import BACKBONE, check_channels
from models.hub import MiTPyramid, check_hub_weights, imagenet_normalization, load_hub_weights, mit_encoder
from models.joint import joint_outputs
from models.normalize import scale_for_classifier
from models.registry import register
from models.unet import mask_output

PROJECTION_FILTERS = 256
"""Channels of the all-MLP decoder for B0 and B1 (the paper's and keras-hub's presets')."""
PRESET_EXAMPLE = {"b0": "segformer_b0_ade20k_512", "b1": "segformer_b1_ade20k_512"}


def _decoder(features: list, projection: int, dropout: float):
    """The all-MLP decoder on the encoder's ``features`` (1/4 first); returns the fused map and its layers."""
    height, width = features[0].shape[1:3]
    dense = [layers.Dense(projection, name=f"decoder_linear_{i}") for i in range(len(features))]
    resized = [
        layers.Resizing(height, width, interpolation="bilinear", name=f"decoder_resize_{i}")(d(f))
        for i, (d, f) in enumerate(zip(dense, features, strict=True))
    ]
    x = layers.Concatenate(name="decoder_concat")(resized[::-1])
    fuse = layers.Conv2D(projection, 1, use_bias=False, name="decoder_fuse")
    bn = layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name="decoder_fuse_bn")
    x = layers.Activation("relu", name="decoder_fuse_relu")(bn(fuse(x)))
    if dropout > 0:
        x = layers.Dropout(dropout, name="decoder_dropout")(x)
    return x, [*dense, fuse, bn]


def build_segformer(
    variant: str,
    img_size: int,
    channels: int = 3,
    dropout: float = 0.1,
    num_classes: int = 1,
    presence_head: bool = False,
    input_norm: str = "fixed",
    joint_classes: int = 0,
    consistency: float = 0.0,
    weights: str = "none",
    drop_path: float = 0.1,
) -> keras.Model:
    """Build SegFormer-``variant`` taking float32 RGB pixels in [0, 255].

    Args:
        variant: ``"b0"`` or ``"b1"``.
        img_size: Side of the square input; a multiple of 32.
        channels: Must be 3 (gray images are repeated by the pipeline).
        dropout: Dropout before the mask's 1x1 convolution (and the joint class head's dense layer).
        num_classes: Output channels; 1 gives a sigmoid lesion probability.
        presence_head: Add an image-level lesion-presence logit to every pixel's (:func:`models.unet.mask_output`).
        input_norm: ``"fixed"`` or ``"image"`` (see :mod:`models.normalize`); ImageNet
            channel normalization follows either way, as the presets expect.
        joint_classes: With more than 0, a joint model (:mod:`models.joint`) whose class head
            reads the deepest encoder features.
        consistency: Joint models: weight of the heads' agreement penalty.
        weights: ``none``, a keras-hub MiT or SegFormer preset (name, handle or directory), or a
            ``.keras`` / ``.weights.h5`` file of this model (see :mod:`models.hub`).
        drop_path: Stochastic depth rate of the last encoder block (rising linearly from 0).

    Returns:
        A functional model mapping ``(B, S, S, 3)`` to ``(B, S, S, num_classes)`` float32
        probabilities (or the joint output dict), also under mixed precision.

    Raises:
        ValueError: If ``img_size`` is not a multiple of 32, ``channels`` is not 3, or the
            preset is of another architecture.
    """
    name = f"segformer_{variant}"
    check_channels(channels, name)
    weights = check_hub_weights(weights, name, PRESET_EXAMPLE.get(variant, "segformer_b0_ade20k_512"))
    mit = mit_encoder(variant, img_size, drop_path, name)
    inputs = keras.Input((img_size, img_size, 3), name="image")
    x = imagenet_normalization()(scale_for_classifier(inputs, input_norm))
    features = MiTPyramid(mit, name=BACKBONE)(x)
    x, decoder = _decoder(features, PROJECTION_FILTERS, dropout)
    mask = mask_output(x, features[-1], num_classes, presence_head, resize_to=img_size)
    if joint_classes:
        model = keras.Model(
            inputs, joint_outputs(mask, features[-1], joint_classes, dropout, consistency), name=f"{name}_joint"
        )
    else:
        model = keras.Model(inputs, mask, name=name)
    load_hub_weights(model, mit, weights, name, decoder)
    return model


@register("segformer_b0", task="seg", joint=True, hub=True, options=("drop_path",))
def build_segformer_b0(**kwargs) -> keras.Model:
    """SegFormer-B0: MiT-B0 encoder (3.3M parameters), see :func:`build_segformer`."""
    return build_segformer("b0", **kwargs)


@register("segformer_b1", task="seg", joint=True, hub=True, options=("drop_path",))
def build_segformer_b1(**kwargs) -> keras.Model:
    """SegFormer-B1: MiT-B1 encoder (13.2M parameters), see :func:`build_segformer`."""
    return build_segformer("b1", **kwargs)
