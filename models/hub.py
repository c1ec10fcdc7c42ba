"""What the keras-hub transformers share: the lazy import, their input normalization, presets as weights.

keras-hub (Keras' model library) builds MiT, SegFormer and DeiT from a config with no
download, and its presets carry pretrained weights for users who can fetch them. It is
imported only when such a model is built or loaded (the import takes seconds), so the
CNNs do not pay for it.

``--weights`` of a keras-hub model is ``none``, a ``.keras`` / ``.weights.h5`` file of
the same model, or a keras-hub preset: a built-in name (``mit_b0_ade20k_512``), a
``kaggle://`` or ``hf://`` handle, or a local preset directory (what
``Backbone.save_to_preset`` writes). A preset fills the encoder (and a SegFormer
preset also the decoder) by position of each weight: the preset's architecture must be
the model's, at any input size. A ViT-family preset trained at another size has its
position embeddings resized bilinearly over the patch grid (DeiT and timm interpolate them
too when fine-tuning at a new resolution, bicubically).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import keras
import numpy as np
from keras import layers

from core.errors import MissingFileError, OptionError
from models.classifier import check_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
"""Channel statistics (of pixels in [0, 1]) the keras-hub ImageNet and ADE20K presets were trained with."""
POSITION_EMBEDDING = "position_embedding"
MIT_VARIANTS = {
    "b0": {"hidden_dims": [32, 64, 160, 256], "layerwise_depths": [2, 2, 2, 2]},
    "b1": {"hidden_dims": [64, 128, 320, 512], "layerwise_depths": [2, 2, 2, 2]},
}
"""Mix Transformer sizes (Xie et al., 2021, Table 6): channels and blocks of the four stages."""
MIT_STAGES = {
    "num_layers": 4,
    "layerwise_num_heads": [1, 2, 5, 8],
    "layerwise_sr_ratios": [8, 4, 2, 1],
    "layerwise_patch_sizes": [7, 3, 3, 3],
    "layerwise_strides": [4, 2, 2, 2],
}
"""What every MiT size shares: heads, attention reduction ratios, patch sizes and strides per stage."""
MIT_STRIDE = 32
"""The input side over the side of MiT's deepest feature map (strides 4 * 2 * 2 * 2)."""


def keras_hub():
    """Import keras-hub, or say how to install it."""
    try:
        import keras_hub as hub
    except ImportError as e:  # pragma: no cover - keras-hub is a pinned dependency
        raise ImportError(
            "the transformer models need keras-hub and tensorflow-text: pip install -e . installs the pinned versions"
        ) from e
    return hub


def imagenet_normalization(name: str = "imagenet_normalization") -> layers.Layer:
    """Pixels in [0, 255] to ImageNet z-scores, per channel (the presets' preprocessing)."""
    return layers.Normalization(
        mean=[255.0 * m for m in IMAGENET_MEAN], variance=[(255.0 * s) ** 2 for s in IMAGENET_STD], name=name
    )


def mit_encoder(variant: str, img_size: int, drop_path: float, name: str) -> keras.Model:
    """keras-hub's ``MiTBackbone`` of size ``variant`` (:data:`MIT_VARIANTS`) for ``img_size`` inputs.

    Raises:
        ValueError: On an unknown variant, an ``img_size`` that is not a multiple of 32 of at
            least 64 (keras-hub's MiT fails on a 1x1 deepest map), or ``drop_path`` outside [0, 1).
    """
    if variant not in MIT_VARIANTS:
        raise ValueError(f"MiT size must be one of {list(MIT_VARIANTS)}. Received: {variant!r}")
    if not 0 <= drop_path < 1:
        raise OptionError(f"`drop_path` of {name} must be in [0, 1). Received: drop_path={drop_path}")
    check_multiple(img_size, MIT_STRIDE, name, smallest=2 * MIT_STRIDE)
    return keras_hub().models.MiTBackbone(
        **MIT_VARIANTS[variant], **MIT_STAGES, max_drop_path_rate=drop_path, image_shape=(img_size, img_size, 3)
    )


@keras.saving.register_keras_serializable(package="busi")
class MiTPyramid(layers.Layer):
    """keras-hub's ``MiTBackbone`` returning its four feature maps (1/4 to 1/32), not only the last.

    The backbone's own layers do not deserialize one by one (keras-hub rebuilds an MiT from
    its constructor arguments), so this layer saves the backbone's config and rebuilds it.

    Args:
        encoder: An ``MiTBackbone``, or its serialized config (when loading).
    """

    def __init__(self, encoder: keras.Model | dict, **kwargs) -> None:
        super().__init__(**kwargs)
        if isinstance(encoder, dict):
            keras_hub()  # registers the class the config names
            encoder = keras.saving.deserialize_keras_object(encoder)
        self._encoder_config = keras.saving.serialize_keras_object(encoder)
        self.pyramid = keras.Model(
            encoder.inputs, [encoder.pyramid_outputs[f"P{i}"] for i in range(1, 5)], name=f"{self.name}_pyramid"
        )

    def call(self, inputs):
        return self.pyramid(inputs)

    def compute_output_shape(self, input_shape):
        return [tuple(t.shape) for t in self.pyramid.outputs]

    def get_config(self) -> dict:
        return {**super().get_config(), "encoder": self._encoder_config}


@keras.saving.register_keras_serializable(package="busi")
class PatchGrid(layers.Layer):
    """A ViT's token sequence ``(B, extra + n*n, D)`` to its patch tokens as a map ``(B, n, n, D)``.

    ``extra`` leading tokens (DeiT's class and distillation tokens) are dropped, so the
    head pools the patch tokens and Grad-CAM has a spatial map to weigh.
    """

    def __init__(self, extra: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.extra = int(extra)

    def _side(self, tokens: int) -> int:
        side = int(round(np.sqrt(tokens - self.extra)))
        if side * side != tokens - self.extra:
            raise ValueError(f"{tokens} tokens minus {self.extra} leading ones are not a square grid of patches")
        return side

    def call(self, inputs):
        side = self._side(inputs.shape[1])
        return keras.ops.reshape(inputs[:, self.extra :], (-1, side, side, inputs.shape[-1]))

    def compute_output_shape(self, input_shape):
        side = self._side(input_shape[1])
        return (input_shape[0], side, side, input_shape[-1])

    def get_config(self) -> dict:
        return {**super().get_config(), "extra": self.extra}


def is_preset(weights: str) -> bool:
    """Whether ``--weights`` names a keras-hub preset rather than ``none``, ``imagenet`` or a weights file."""
    return weights not in ("none", "imagenet") and not weights.endswith((".keras", ".weights.h5"))


def check_hub_weights(weights: str, model: str, example: str) -> str:
    """Validate ``--weights`` of the keras-hub model ``model``.

    Raises:
        ValueError: On ``imagenet`` (a keras-hub model names its preset) or a bad file name.
        FileNotFoundError: If a weights file, or a preset given as a path, does not exist.
    """
    if weights == "imagenet":
        raise OptionError(
            f"`--weights imagenet` is for keras.applications backbones; {model} takes a keras-hub preset name "
            f"(e.g. --weights {example}), a preset directory, none, or a .keras / .weights.h5 file"
        )
    if not is_preset(weights):
        return check_weights(weights)
    if "://" not in weights and ("/" in weights or Path(weights).exists()):
        path = Path(weights)
        if not (path / "config.json").is_file():
            raise MissingFileError(
                f"`--weights {weights}`: not a keras-hub preset directory (no config.json in {path}); "
                "Backbone.save_to_preset writes one"
            )
    return weights


def load_preset(preset: str) -> keras.Model:
    """The keras-hub backbone of ``preset`` at the input size it was saved with."""
    hub = keras_hub()
    try:
        return hub.models.Backbone.from_preset(preset)
    except (ValueError, FileNotFoundError, OSError) as e:
        raise OptionError(
            f"`--weights {preset}` could not be loaded as a keras-hub preset ({type(e).__name__}: {e}). Built-in "
            "names need network access to Kaggle or Hugging Face; a local preset directory needs none"
        ) from e


def _resize_positions(source: np.ndarray, target_shape: tuple[int, ...]) -> np.ndarray:
    """Position embeddings ``(1, extra + n*n, D)`` resized bilinearly to ``(1, extra + m*m, D)``."""
    n_src, n_dst = source.shape[1], target_shape[1]
    for extra in (0, 1, 2):
        side_src, side_dst = np.sqrt(n_src - extra), np.sqrt(n_dst - extra)
        if side_src.is_integer() and side_dst.is_integer():
            break
    else:
        raise ValueError(f"cannot resize position embeddings of shape {source.shape} to {target_shape}")
    side_src, side_dst = int(side_src), int(side_dst)
    grid = source[:, extra:].reshape(1, side_src, side_src, -1)
    resized = keras.ops.convert_to_numpy(
        keras.ops.image.resize(grid.astype("float32"), (side_dst, side_dst), interpolation="bilinear")
    )
    return np.concatenate([source[:, :extra], resized.reshape(1, side_dst * side_dst, -1)], axis=1)


def _assign_all(source: list, target: list) -> None:
    """Assign each of ``source``'s weights to the ``target`` weight at its position (position embeddings resized)."""
    for s, d in zip(source, target, strict=True):
        value = keras.ops.convert_to_numpy(s)
        if tuple(value.shape) != tuple(d.shape):
            value = _resize_positions(value, tuple(d.shape))
        d.assign(value.astype(d.dtype))


def copy_preset_weights(source: keras.Model, target: keras.Model, preset: str, model: str) -> int:
    """Copy ``source``'s weights into ``target`` (the same keras-hub architecture, any input size).

    A SegFormer preset (``source.image_encoder``) into an MiT encoder copies its encoder.

    Returns:
        The number of weights copied.

    Raises:
        ValueError: If the preset's architecture is not the model's.
    """
    if hasattr(source, "image_encoder"):
        source = source.image_encoder
    src, dst = source.weights, target.weights
    src_shapes = [tuple(w.shape) for w in src]
    dst_shapes = [tuple(w.shape) for w in dst]
    mismatch = len(src) != len(dst) or any(
        a != b and not (POSITION_EMBEDDING in w.path and len(a) == 3 and a[::2] == b[::2])
        for a, b, w in zip(src_shapes, dst_shapes, dst, strict=False)
    )
    if mismatch:
        raise OptionError(
            f"`--weights {preset}` is a {type(source).__name__} with {len(src)} weights "
            f"({sum(int(np.prod(s)) for s in src_shapes):,} values); --model {model} needs a "
            f"{type(target).__name__} with {len(dst)} ({sum(int(np.prod(s)) for s in dst_shapes):,}): "
            "pick a preset of the same architecture"
        )
    _assign_all(src, dst)
    return len(dst)


def load_hub_weights(
    model: keras.Model, encoder: keras.Model, weights: str, name: str, decoder: list[layers.Layer] | None = None
) -> None:
    """Start ``model`` from ``weights``: a preset fills ``encoder`` (a keras-hub model), a file all of ``model``.

    With ``decoder`` (SegFormer's decoder layers, in keras-hub's ``SegFormerBackbone`` order), a
    SegFormer preset also fills them; an MiT preset leaves them as built.

    Raises:
        ValueError: If the preset's encoder or decoder is not the model's.
    """
    if weights == "none":
        return
    if not is_preset(weights):
        model.load_weights(weights)
        return
    source = load_preset(weights)
    n = copy_preset_weights(source, encoder, weights, name)
    if decoder is not None and hasattr(source, "image_encoder"):
        encoder_ids = {id(w) for w in source.image_encoder.weights}
        src = [w for w in source.weights if id(w) not in encoder_ids]
        dst = [w for layer in decoder for w in layer.weights]
        if [tuple(w.shape) for w in src] != [tuple(w.shape) for w in dst]:
            raise OptionError(f"`--weights {weights}`: its decoder does not match {name}'s ({len(src)} weights)")
        _assign_all(src, dst)
        n += len(dst)
    print(f"{name}: {n} weights from the keras-hub preset {weights}")


def uses_keras_hub(path: str | Path) -> bool:
    """Whether the ``.keras`` file at ``path`` holds a keras-hub model (its config names the package)."""
    path = Path(path)
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return b'"keras_hub' in archive.read("config.json")


def check_multiple(img_size: int, step: int, model: str, smallest: int = 0) -> None:
    """Raise a clear error when ``img_size`` is not a multiple of ``step`` of at least ``smallest`` (and ``step``)."""
    smallest = max(step, smallest)
    if img_size < smallest or img_size % step:
        raise OptionError(
            f"`img_size` must be a multiple of {step} for {model} (its coarsest feature map is 1/{step} of the "
            f"input), at least {smallest}. Received: img_size={img_size}"
        )
