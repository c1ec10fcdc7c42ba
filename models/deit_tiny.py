"""DeiT-Tiny (Touvron et al., 2021): keras-hub's ``DeiTBackbone`` with the shared head.

Chosen over ``ViTBackbone`` because keras-hub ships DeiT weights at the Tiny and Small
sizes (``deit_tiny_distilled_patch16_224_imagenet``), while its smallest ViT preset is
ViT-Base (86M parameters, too slow to train on these CPUs); both build from one
constructor call. DeiT was also made to train on ImageNet alone, without extra data.

The head pools the patch tokens (the class and distillation tokens are dropped,
:class:`models.hub.PatchGrid`), global average pooling as in Beyer et al. (2022), so
the backbone's output is a map (the patch grid) like every other classifier's, which
Grad-CAM weighs. A preset trained at another input size gets its position embeddings
resized (:mod:`models.hub`).
"""

from __future__ import annotations

import keras

from core.errors import OptionError
from models.classifier import BACKBONE, assemble, check_channels
from models.hub import PatchGrid, check_hub_weights, check_multiple, imagenet_normalization, keras_hub, load_hub_weights
from models.registry import register

DEIT_TINY = {"num_layers": 12, "num_heads": 3, "hidden_dim": 192, "intermediate_dim": 768}
"""DeiT-Tiny's encoder (Touvron et al., 2021, Table 1): 12 blocks of 3 heads, 192 channels."""
EXTRA_TOKENS = 2
"""DeiT's class and distillation tokens, ahead of the patch tokens."""


@register(
    "deit_tiny", task="cls", cam_layer=BACKBONE, hub=True, options=("patch_size", "num_layers")
)  # Grad-CAM: the patch-token grid
def build_deit_tiny(
    img_size: int,
    channels: int = 3,
    num_classes: int = 3,
    dropout: float = 0.2,
    weights: str = "none",
    input_norm: str = "fixed",
    patch_size: int = 16,
    num_layers: int = DEIT_TINY["num_layers"],
) -> keras.Model:
    """Build a DeiT-Tiny classifier taking float32 RGB pixels in [0, 255].

    Args:
        img_size: Side of the square input; a multiple of ``patch_size``.
        weights: ``none``, a keras-hub DeiT preset (``deit_tiny_distilled_patch16_224_imagenet``,
            a handle or a directory), or a ``.keras`` / ``.weights.h5`` file of this model.
        patch_size: Side of a patch; a preset needs its own (16).
        num_layers: Transformer blocks; a preset needs its own (12). keras-hub's DeiT has no
            stochastic depth, so there is no ``drop_path`` here.
        Others as :func:`models.resnet50.build_resnet50`.

    Raises:
        ValueError: If ``img_size`` is not a multiple of ``patch_size``, ``num_layers`` < 1,
            ``channels`` is not 3, or the preset is of another architecture.
    """
    check_channels(channels, "deit_tiny")
    check_multiple(img_size, patch_size, "deit_tiny")
    if num_layers < 1:
        raise OptionError(f"`num_layers` of deit_tiny must be at least 1. Received: num_layers={num_layers}")
    weights = check_hub_weights(weights, "deit_tiny", "deit_tiny_distilled_patch16_224_imagenet")
    deit = keras_hub().models.DeiTBackbone(
        image_shape=(img_size, img_size, 3),
        patch_size=patch_size,
        **(DEIT_TINY | {"num_layers": num_layers}),
        name="deit",
    )
    inputs = keras.Input((img_size, img_size, 3), name="tokens_in")
    grid = PatchGrid(EXTRA_TOKENS, name="patch_grid")(deit(inputs))
    backbone = keras.Model(inputs, grid, name=BACKBONE)
    model = assemble(
        backbone,
        img_size,
        num_classes,
        dropout,
        "deit_tiny",
        preprocess=imagenet_normalization(),
        input_norm=input_norm,
    )
    load_hub_weights(model, deit, weights, "deit_tiny")
    return model
