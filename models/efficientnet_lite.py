"""The EfficientNet-Lite0 network (Google's ``efficientnet_lite`` release), in Keras.

Lite0 is EfficientNet-B0 made for integer hardware: no squeeze-and-excitation, ReLU6
instead of swish, a fixed stem (32 filters) and head (1,280), and input scaling
``(x - 127) / 128`` on 0-255 RGB, which is inside the network here (the ``rescaling``
layer), so it takes pixels in [0, 255] like every backbone of the project.

Layer names follow ``keras.applications.EfficientNetB0`` (``stem_conv``,
``block2a_expand_activation``, ``top_activation``, ...), so a U-Net reads the same
skip features from either. Its ImageNet weights come from :mod:`models.lite_weights`.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import keras
from keras import layers

BN_EPSILON = 1e-3
"""Batch norm epsilon of the TensorFlow release (and of its PyTorch port)."""
STEM_FILTERS, HEAD_FILTERS = 32, 1280
DROP_CONNECT_RATE = 0.2
"""Stochastic depth of the last block's residual branch; earlier blocks drop linearly less."""


@dataclass(frozen=True)
class Stage:
    """One stage of MBConv blocks: its repeats, kernel, first stride, expansion and output filters."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    filters: int


STAGES = (
    Stage(1, 3, 1, 1, 16),
    Stage(2, 3, 2, 6, 24),
    Stage(2, 5, 2, 6, 40),
    Stage(3, 3, 2, 6, 80),
    Stage(3, 5, 1, 6, 112),
    Stage(4, 5, 2, 6, 192),
    Stage(1, 3, 1, 6, 320),
)
"""EfficientNet-B0's seven stages (Tan and Le, 2019, table 1), which Lite0 keeps."""


def block_names() -> list[tuple[str, Stage, int]]:
    """Every MBConv block in order: its Keras name prefix (``block1a``, ``block2a``, ``block2b``, ...),
    its stage and its stride."""
    names = []
    for i, stage in enumerate(STAGES):
        for r in range(stage.repeats):
            names.append((f"block{i + 1}{string.ascii_lowercase[r]}", stage, stage.stride if r == 0 else 1))
    return names


def _bn(name: str) -> layers.Layer:
    return layers.BatchNormalization(epsilon=BN_EPSILON, name=name)


def _mbconv(x, name: str, stage: Stage, stride: int, filters_in: int, drop: float):
    """Inverted residual block without squeeze-and-excitation, ReLU6 activations."""
    inputs = x
    if stage.expand != 1:
        x = layers.Conv2D(filters_in * stage.expand, 1, use_bias=False, name=f"{name}_expand_conv")(x)
        x = _bn(f"{name}_expand_bn")(x)
        x = layers.ReLU(6.0, name=f"{name}_expand_activation")(x)
    x = layers.DepthwiseConv2D(stage.kernel, stride, padding="same", use_bias=False, name=f"{name}_dwconv")(x)
    x = _bn(f"{name}_bn")(x)
    x = layers.ReLU(6.0, name=f"{name}_activation")(x)
    x = layers.Conv2D(stage.filters, 1, use_bias=False, name=f"{name}_project_conv")(x)
    x = _bn(f"{name}_project_bn")(x)
    if stride == 1 and filters_in == stage.filters:
        if drop > 0:
            x = layers.Dropout(drop, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(x)
        x = layers.add([x, inputs], name=f"{name}_add")
    return x


def lite0_network(img_size: int | None, include_top: bool = False, name: str = "efficientnet_lite0") -> keras.Model:
    """Build EfficientNet-Lite0 taking float32 RGB pixels in [0, 255], weights uninitialized.

    Args:
        img_size: Side of the square input (None: any size).
        include_top: End with ImageNet's pooled 1,000-class softmax (``predictions``); otherwise
            the output is the last feature map, ``top_activation`` (stride 32, 1,280 channels).
        name: The model's name.

    Returns:
        A functional ``keras.Model``.
    """
    inputs = keras.Input((img_size, img_size, 3), name="pixels")
    x = layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="rescaling")(inputs)
    x = layers.Conv2D(STEM_FILTERS, 3, 2, padding="same", use_bias=False, name="stem_conv")(x)
    x = _bn("stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_activation")(x)
    blocks = block_names()
    filters = STEM_FILTERS
    for b, (block, stage, stride) in enumerate(blocks):
        x = _mbconv(x, block, stage, stride, filters, DROP_CONNECT_RATE * b / len(blocks))
        filters = stage.filters
    x = layers.Conv2D(HEAD_FILTERS, 1, use_bias=False, name="top_conv")(x)
    x = _bn("top_bn")(x)
    x = layers.ReLU(6.0, name="top_activation")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(0.2, name="top_dropout")(x)
        x = layers.Dense(1000, name="predictions")(x)
        x = layers.Activation("softmax", dtype="float32", name="softmax")(x)
    return keras.Model(inputs, x, name=name)
