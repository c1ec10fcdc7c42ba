"""U-Net (Ronneberger et al., 2015) with instance or batch norm and dropout."""

from __future__ import annotations

import keras
from keras import layers

from core.errors import OptionError
from models.joint import joint_outputs
from models.normalize import scale_for_segmenter
from models.options import NORMS
from models.registry import register


def norm_layer(norm: str, name: str) -> layers.Layer:
    """Instance norm (per image and channel; the same in training and inference) or batch norm.

    Batch norm is synchronized across replicas; instance norm needs no synchronization.

    Raises:
        ValueError: If ``norm`` is not in :data:`NORMS`.
    """
    if norm == "instance":
        return layers.GroupNormalization(groups=-1, name=name)
    if norm == "batch":
        return layers.BatchNormalization(synchronized=True, name=name)
    raise OptionError(f"`norm` must be one of {list(NORMS)}. Received: norm={norm!r}")


def conv_block(x, filters: int, dropout: float, name: str, norm: str):
    """Two 3x3 convolutions, each followed by ``norm`` and LeakyReLU, then spatial dropout if asked (a U-Net level)."""
    for i in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = norm_layer(norm, f"{name}_norm{i}")(x)
        x = layers.LeakyReLU(0.1, name=f"{name}_act{i}")(x)
    if dropout > 0:
        x = layers.SpatialDropout2D(dropout, name=f"{name}_drop")(x)
    return x


def check_input_size(img_size: int, depth: int) -> None:
    """Raise a clear error when ``img_size`` does not survive ``depth`` halvings.

    Raises:
        ValueError: If ``img_size`` is not a positive multiple of ``2**depth``.
    """
    step = 2**depth
    if img_size < step or img_size % step:
        raise OptionError(
            f"`img_size` must be a multiple of {step} (2**depth, depth={depth}). Received: img_size={img_size}"
        )


def mask_output(x, deep, num_classes: int, presence_head: bool, resize_to: int | None = None):
    """The 1x1 head and its activation; with ``presence_head``, an image-level lesion-presence logit.

    ``resize_to`` resizes the logits bilinearly to that side first (a decoder that stops
    short of the input resolution, as SegFormer's at 1/4).

    The presence logit is read from the deepest features (their average and maximum over the
    image) and added to every pixel's logit before the sigmoid, so one number per image can
    lower the whole map of an image without a lesion, something a per-pixel head that sees
    instance-normalized features cannot easily learn.

    Raises:
        ValueError: If ``presence_head`` is asked for more than one output channel.
    """
    logits = layers.Conv2D(num_classes, 1, name="head_conv")(x)
    if resize_to is not None:
        logits = layers.Resizing(resize_to, resize_to, interpolation="bilinear", name="head_upsample")(logits)
    if presence_head:
        if num_classes != 1:
            raise ValueError(f"`presence_head` needs num_classes=1 (a lesion map). Received: num_classes={num_classes}")
        pooled = layers.Concatenate(name="presence_pool")(
            [
                layers.GlobalAveragePooling2D(name="presence_avg")(deep),
                layers.GlobalMaxPooling2D(name="presence_max")(deep),
            ]
        )
        presence = layers.Dense(1, name="presence_logit")(pooled)
        logits = layers.Add(name="head_logits")([logits, layers.Reshape((1, 1, 1), name="presence_bias")(presence)])
    activation = "sigmoid" if num_classes == 1 else "softmax"
    return layers.Activation(activation, dtype="float32", name="mask")(logits)


def _encoder(x, depth: int, base_filters: int, dropout: float, norm: str):
    """The contracting path: each level's features (the skips) and the bottleneck's."""
    skips = []
    for level in range(depth):
        drop = dropout if level >= depth - 1 else 0.0
        x = conv_block(x, base_filters * 2**level, drop, name=f"enc{level}", norm=norm)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)
    return skips, conv_block(x, base_filters * 2**depth, dropout, name="bottleneck", norm=norm)


def _decoder(x, skips: list, base_filters: int, norm: str):
    """The expanding path: up-sample, join the level's skip, convolve, back to the input's size."""
    for level in reversed(range(len(skips))):
        filters = base_filters * 2**level
        x = layers.Conv2DTranspose(filters, 2, strides=2, name=f"dec{level}_up")(x)
        x = layers.Concatenate(name=f"dec{level}_concat")([x, skips[level]])
        x = conv_block(x, filters, 0.0, name=f"dec{level}", norm=norm)
    return x


@register("unet", task="seg", joint=True)
def build_unet(
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
    """Build a U-Net taking float32 pixels in [0, 255].

    Args:
        img_size: Side of the square input; a multiple of ``2**depth``.
        channels: Input channels.
        base_filters: Filters of the first level; each level down doubles them.
        depth: Number of down-sampling steps.
        dropout: Spatial dropout after the bottleneck and the deepest levels (0 disables).
        num_classes: Output channels; 1 gives a sigmoid lesion probability.
        norm: ``"instance"`` (default; Ulyanov et al., 2016, as in nnU-Net and MONAI's BasicUNet)
            or ``"batch"`` normalization after every convolution.
        presence_head: Add an image-level lesion-presence logit to every pixel's (see :func:`mask_output`).
        input_norm: ``"fixed"`` (pixels / 255) or ``"image"`` (each image standardized on its own;
            see :mod:`models.normalize`).
        joint_classes: With more than 0, a joint model (:mod:`models.joint`): a class head of this many
            classes on the deepest features beside the mask, outputs ``{"mask", "label"}``.
        consistency: Joint models: weight of the heads' agreement penalty (:class:`models.joint.LesionAgreement`).

    Returns:
        A functional ``keras.Model`` mapping ``(B, S, S, C)`` to ``(B, S, S, num_classes)``
        probabilities in float32, also under mixed precision.

    Raises:
        ValueError: If ``img_size`` is not a multiple of ``2**depth``, or ``norm`` is unknown.

    Example:
        >>> model = build_unet(img_size=128, base_filters=16)
        >>> model.output_shape
        (None, 128, 128, 1)
    """
    check_input_size(img_size, depth)
    inputs = keras.Input((img_size, img_size, channels), name="image")
    x = scale_for_segmenter(inputs, input_norm)
    skips, deep = _encoder(x, depth, base_filters, dropout, norm)
    mask = mask_output(_decoder(deep, skips, base_filters, norm), deep, num_classes, presence_head)
    if joint_classes:
        return keras.Model(inputs, joint_outputs(mask, deep, joint_classes, dropout, consistency), name="unet_joint")
    return keras.Model(inputs, mask, name="unet")
