"""What the four classifiers share: ImageNet input normalization, the head, weights.

Every classifier is ``image (float32 pixels in [0, 255]) -> [per-image
standardization, with input_norm="image"] -> normalization -> backbone (a
nested model named "backbone") -> global average pooling -> dropout ->
Dense(num_classes) -> softmax in float32``. The normalization the ImageNet
weights were trained with is inside the model, so the pipeline and
serving feed raw pixels to every backbone.
"""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers

from core.errors import MissingFileError, OptionError
from models.normalize import scale_for_classifier

WEIGHTS_CHOICES = ("none", "imagenet")
# Batch-norm momentum of backbones trained from scratch. keras.applications use 0.99, whose
# moving statistics average over ~100 steps: on a few hundred images (a few dozen steps per
# epoch) they lag the changing weights by epochs, and validation sees stale statistics.
# 0.9 is PyTorch's default (momentum 0.1 there).
SCRATCH_BN_MOMENTUM = 0.9
# ImageNet channel means in BGR order, as Caffe (and keras.applications' ResNet) expects.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="busi")
class CaffePreprocess(layers.Layer):
    """RGB pixels in [0, 255] to BGR minus the ImageNet means (``keras.applications.resnet`` style)."""

    def call(self, inputs):
        bgr = keras.ops.flip(inputs, axis=-1)
        return bgr - keras.ops.convert_to_tensor(CAFFE_BGR_MEAN, dtype=bgr.dtype)


@keras.saving.register_keras_serializable(package="busi", name="FrozenBatchNormalization")
class FrozenBatchNormalization(layers.BatchNormalization):
    """Batch norm that always normalizes with its moving (pretrained) statistics and never updates them.

    Its scale and offset still train when the layer is trainable. A nested backbone called with
    ``training=False`` is not enough in Keras 3: a functional model passes its own ``training``
    to every layer it replays, so ``fit`` would run the backbone's batch norm in training mode and
    overwrite ImageNet's statistics with those of small batches.
    """

    def call(self, inputs, training=None, mask=None):
        return super().call(inputs, training=False, mask=mask)


# Keras files address a layer's weights by its class name: under batch norm's name, a run started from
# ImageNet and one started from scratch store the same paths, so either's weights file starts the other.
FrozenBatchNormalization.__name__ = "BatchNormalization"


def freeze_batch_norm(backbone: keras.Model) -> keras.Model:
    """A copy of ``backbone`` (same names and weights) with every batch norm a :class:`FrozenBatchNormalization`."""

    def clone(layer: layers.Layer) -> layers.Layer:
        if type(layer) is layers.BatchNormalization:
            return FrozenBatchNormalization.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    frozen = keras.models.clone_model(backbone, clone_function=clone)
    frozen.set_weights(backbone.get_weights())
    return frozen


def backbone_batch_norm(backbone: keras.Model, pretrained: bool) -> keras.Model:
    """``backbone`` with its batch norm set for how it starts: pretrained, frozen statistics
    (:func:`freeze_batch_norm`); from scratch, :data:`SCRATCH_BN_MOMENTUM` (changed in place)."""
    if pretrained:
        return freeze_batch_norm(backbone)
    for layer in backbone.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = SCRATCH_BN_MOMENTUM
    return backbone


BACKBONE = "backbone"
"""Name of every classifier's nested backbone; its output is the last convolutional block's feature map."""
LOGITS = "logits"
"""Name of the head's dense layer (class scores before the softmax), which Grad-CAM differentiates."""


def check_weights(weights: str) -> str:
    """Validate ``--weights`` (``none``, ``imagenet`` or an existing ``.keras``/``.weights.h5`` file).

    Raises:
        ValueError: On an unknown keyword or a file of another kind.
        FileNotFoundError: If the file does not exist.
    """
    if weights in WEIGHTS_CHOICES:
        return weights
    path = Path(weights)
    if not (path.name.endswith(".keras") or path.name.endswith(".weights.h5")):
        raise OptionError(
            f"`weights` must be none, imagenet, or a .keras / .weights.h5 file. Received: weights={weights!r}"
        )
    if not path.is_file():
        raise MissingFileError(f"`weights` file not found: {path}")
    return weights


def check_channels(channels: int, name: str) -> None:
    """Classifier backbones take RGB (the pipeline converts gray images to 3 channels)."""
    if channels != 3:
        raise OptionError(f"`{name}` takes 3-channel input (gray images are converted). Received: channels={channels}")


def assemble(
    backbone: keras.Model,
    img_size: int,
    num_classes: int,
    dropout: float,
    name: str,
    preprocess: layers.Layer | None = None,
    frozen_bn: bool = False,
    input_norm: str = "fixed",
) -> keras.Model:
    """Wrap ``backbone`` (named ``"backbone"``) with the input, normalization and head.

    Args:
        preprocess: The backbone's ImageNet normalization, when the backbone has none inside.
        input_norm: ``"image"`` standardizes each image on its own before ``preprocess``
            (see :mod:`models.normalize`); ``"fixed"`` feeds the pixels as they are.
        frozen_bn: Make the backbone's batch norm keep the pretrained statistics, also once
            it is unfrozen (fine-tuning from ImageNet; :func:`freeze_batch_norm`).
            Otherwise (training from scratch) batch norm uses :data:`SCRATCH_BN_MOMENTUM`.
    """
    backbone = backbone_batch_norm(backbone, frozen_bn)
    inputs = keras.Input((img_size, img_size, 3), name="image")
    x = scale_for_classifier(inputs, input_norm)
    x = preprocess(x) if preprocess is not None else x
    x = backbone(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    x = layers.Dense(num_classes, name=LOGITS)(x)
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)


def load_weights_file(model: keras.Model, weights: str) -> None:
    """Load ``weights`` into ``model`` when it names a file (``none``/``imagenet`` do nothing)."""
    if weights not in WEIGHTS_CHOICES:
        model.load_weights(weights)


def transfer_by_name(src: keras.Model, dst: keras.Model) -> list[str]:
    """Copy the weights of every layer of ``src`` into the layer of ``dst`` with the same name.

    Returns:
        Names of ``dst``'s layers with weights that ``src`` has no layer for.

    Raises:
        ValueError: If a layer of the same name has weights of other shapes.
    """
    by_name = {layer.name: layer for layer in src.layers}
    missing = []
    for layer in dst.layers:
        if not layer.weights:
            continue
        other = by_name.get(layer.name)
        if other is None:
            missing.append(layer.name)
            continue
        shapes = [tuple(w.shape) for w in layer.weights], [tuple(w.shape) for w in other.weights]
        if shapes[0] != shapes[1]:
            raise OptionError(f"layer {layer.name!r}: weight shapes {shapes[1]} cannot go into {shapes[0]}")
        layer.set_weights(other.get_weights())
    return missing
