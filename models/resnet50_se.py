"""ResNet-50 with Squeeze-and-Excitation blocks (Hu et al., 2018).

The backbone repeats ``keras.applications.ResNet50``'s graph layer for layer,
with the same layer names, and adds one SE block (reduction 16) in each of
the 16 bottleneck blocks, on the residual branch just before the addition.
ImageNet weights therefore load by layer name from ``keras.applications``'
ResNet-50; the SE layers (all named ``*_se_*``) start fresh.
"""

from __future__ import annotations

import keras
from keras import layers

from models.classifier import (
    BACKBONE,
    CaffePreprocess,
    assemble,
    check_channels,
    check_weights,
    load_weights_file,
    transfer_by_name,
)
from models.registry import register

SE_RATIO = 16
# (filters, blocks, first stride) of conv2..conv5, as in keras.applications.ResNet50.
STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))
_EPS = 1.001e-5


def _se(x, channels: int, name: str):
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_squeeze")(x)
    s = layers.Conv2D(max(1, channels // SE_RATIO), 1, activation="relu", name=f"{name}_se_reduce")(s)
    s = layers.Conv2D(channels, 1, activation="sigmoid", name=f"{name}_se_expand")(s)
    return layers.Multiply(name=f"{name}_se_excite")([x, s])


def _block(x, filters: int, stride: int, conv_shortcut: bool, name: str):
    if conv_shortcut:
        shortcut = layers.Conv2D(4 * filters, 1, strides=stride, name=f"{name}_0_conv")(x)
        shortcut = layers.BatchNormalization(epsilon=_EPS, name=f"{name}_0_bn")(shortcut)
    else:
        shortcut = x
    x = layers.Conv2D(filters, 1, strides=stride, name=f"{name}_1_conv")(x)
    x = layers.BatchNormalization(epsilon=_EPS, name=f"{name}_1_bn")(x)
    x = layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = layers.Conv2D(filters, 3, padding="same", name=f"{name}_2_conv")(x)
    x = layers.BatchNormalization(epsilon=_EPS, name=f"{name}_2_bn")(x)
    x = layers.Activation("relu", name=f"{name}_2_relu")(x)
    x = layers.Conv2D(4 * filters, 1, name=f"{name}_3_conv")(x)
    x = layers.BatchNormalization(epsilon=_EPS, name=f"{name}_3_bn")(x)
    x = _se(x, 4 * filters, name)
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def se_resnet50_backbone(img_size: int) -> keras.Model:
    """The SE-ResNet-50 feature extractor (no head), named ``"backbone"``."""
    inputs = keras.Input((img_size, img_size, 3))
    x = layers.ZeroPadding2D(padding=((3, 3), (3, 3)), name="conv1_pad")(inputs)
    x = layers.Conv2D(64, 7, strides=2, name="conv1_conv")(x)
    x = layers.BatchNormalization(epsilon=_EPS, name="conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(padding=((1, 1), (1, 1)), name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, (filters, blocks, stride) in enumerate(STAGES, start=2):
        for b in range(1, blocks + 1):
            x = _block(x, filters, stride if b == 1 else 1, b == 1, name=f"conv{stage}_block{b}")
    return keras.Model(inputs, x, name=BACKBONE)


@register(
    "resnet50_se", task="cls", cam_layer=BACKBONE
)  # Grad-CAM: the backbone's output, conv5_block3_out, after its SE block
def build_resnet50_se(
    img_size: int,
    channels: int = 3,
    num_classes: int = 3,
    dropout: float = 0.2,
    weights: str = "none",
    input_norm: str = "fixed",
) -> keras.Model:
    """Build an SE-ResNet-50 classifier taking float32 RGB pixels in [0, 255].

    With ``weights="imagenet"`` every ResNet-50 layer loads ``keras.applications``'
    ImageNet weights by name and only the SE layers start from random values.
    Arguments as :func:`models.resnet50.build_resnet50`.
    """
    check_channels(channels, "resnet50_se")
    weights = check_weights(weights)
    backbone = se_resnet50_backbone(img_size)
    if weights == "imagenet":
        source = keras.applications.ResNet50(include_top=False, weights="imagenet", input_shape=(img_size, img_size, 3))
        fresh = transfer_by_name(source, backbone)
        if any("_se_" not in n for n in fresh):
            raise RuntimeError(f"ImageNet ResNet-50 has no weights for layers {fresh}")
    model = assemble(
        backbone, img_size, num_classes, dropout, "resnet50_se", CaffePreprocess(name="imagenet_norm"),
        frozen_bn=weights == "imagenet", input_norm=input_norm,
    )  # fmt: skip
    load_weights_file(model, weights)
    return model
