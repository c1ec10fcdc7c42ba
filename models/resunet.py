"""ResUNet (Zhang, Liu and Wang, 2018): a U-Net built from pre-activation residual units."""

from __future__ import annotations

import keras
from keras import layers

from models.joint import joint_outputs
from models.normalize import scale_for_segmenter
from models.registry import register
from models.unet import check_input_size, mask_output, norm_layer


def _residual_unit(x, filters: int, stride: int, name: str, norm: str, first: bool = False):
    shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_proj")(x)
    shortcut = norm_layer(norm, f"{name}_proj_norm")(shortcut)
    y = x
    if not first:  # the stem's first conv sees raw pixels, not a pre-activation
        y = norm_layer(norm, f"{name}_norm1")(y)
        y = layers.Activation("relu", name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(y)
    y = norm_layer(norm, f"{name}_norm2")(y)
    y = layers.Activation("relu", name=f"{name}_relu2")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    return layers.Add(name=f"{name}_add")([shortcut, y])


def _decoder(x, skips: list, base_filters: int, norm: str):
    """Up-sample, join each level's skip, a residual unit per level; then the head's norm and ReLU."""
    for level in reversed(range(len(skips))):
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"dec{level}_up")(x)
        x = layers.Concatenate(name=f"dec{level}_concat")([x, skips[level]])
        x = _residual_unit(x, base_filters * 2**level, 1, f"dec{level}", norm)
    x = norm_layer(norm, "head_norm")(x)
    return layers.Activation("relu", name="head_relu")(x)


@register("resunet", task="seg", joint=True)
def build_resunet(
    img_size: int,
    channels: int = 3,
    base_filters: int = 16,
    depth: int = 4,
    dropout: float = 0.1,
    num_classes: int = 1,
    norm: str = "instance",
    presence_head: bool = False,
    input_norm: str = "fixed",
    joint_classes: int = 0,
    consistency: float = 0.0,
) -> keras.Model:
    """Build a ResUNet taking float32 pixels in [0, 255].

    Args:
        img_size: Side of the square input; a multiple of ``2**depth``.
        channels: Input channels.
        base_filters: Filters of the first level; each level down doubles them.
        depth: Number of down-sampling residual units (the paper uses 3 and a bridge).
        dropout: Spatial dropout on the bridge (0 disables).
        num_classes: Output channels; 1 gives a sigmoid lesion probability.
        norm: ``"instance"`` (default) or ``"batch"`` normalization.
        presence_head: Add an image-level lesion-presence logit to every pixel's
            (see :func:`models.unet.mask_output`).
        input_norm: ``"fixed"`` (pixels / 255) or ``"image"`` (see :mod:`models.normalize`).
        joint_classes: With more than 0, a joint model (:mod:`models.joint`): a class head of this many
            classes on the deepest features beside the mask, outputs ``{"mask", "label"}``.
        consistency: Joint models: weight of the heads' agreement penalty (:class:`models.joint.LesionAgreement`).

    Returns:
        A functional ``keras.Model`` with float32 probabilities ``(B, S, S, num_classes)``.

    Raises:
        ValueError: If ``img_size`` is not a multiple of ``2**depth``.

    Example:
        >>> build_resunet(img_size=128).output_shape
        (None, 128, 128, 1)
    """
    check_input_size(img_size, depth)
    inputs = keras.Input((img_size, img_size, channels), name="image")
    x = scale_for_segmenter(inputs, input_norm)
    x = _residual_unit(x, base_filters, 1, "enc0", norm, first=True)
    skips = [x]
    for level in range(1, depth + 1):
        x = _residual_unit(x, base_filters * 2**level, 2, f"enc{level}", norm)
        if level < depth:
            skips.append(x)
    if dropout > 0:
        x = layers.SpatialDropout2D(dropout, name="bridge_drop")(x)
    deep = x
    mask = mask_output(_decoder(deep, skips, base_filters, norm), deep, num_classes, presence_head)
    if joint_classes:
        return keras.Model(inputs, joint_outputs(mask, deep, joint_classes, dropout, consistency), name="resunet_joint")
    return keras.Model(inputs, mask, name="resunet")
