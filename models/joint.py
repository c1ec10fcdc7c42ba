"""What every joint model shares: one encoder, a lesion mask and a normal/benign/malignant class.

A joint model maps float32 pixels in [0, 255] to a dict of two float32 outputs,
``{"mask": (B, S, S, 1) lesion probability, "label": (B, 3) class probabilities}``,
the keys of the joint pipeline's targets (:func:`pipeline.dataset.build_dataset`).
The class head reads the encoder's deepest features (a layer named
:data:`DEEP_FEATURES`, which Grad-CAM explains): global average pooling, dropout,
``Dense`` (:data:`models.classifier.LOGITS`) and a float32 softmax.

With ``consistency`` > 0, :class:`LesionAgreement` adds ``consistency *
mean((P(lesion) - presence)^2)`` to the model's losses, where ``P(lesion) = 1 -
P(normal)`` is the class head's and ``presence`` the mean of the mask's highest
probabilities (the top :data:`losses.segmentation.TOP_FRACTION` of pixels): the
two heads are pushed to agree on whether the image shows a lesion.
"""

from __future__ import annotations

import keras
from keras import layers

from core.classes import CLASS_NAMES
from models.classifier import LOGITS

DEEP_FEATURES = "deep_features"
"""Name of the identity layer on a joint model's deepest encoder features (the class head's input)."""
MASK, LABEL = "mask", "label"
"""The joint model's output keys (the joint pipeline's target keys)."""
PRESENCE_FRACTION = 0.005
"""Share of a mask's pixels, the most probable, whose mean is its lesion presence (as
:data:`losses.segmentation.TOP_FRACTION`; a model does not import the losses)."""
NORMAL_INDEX = CLASS_NAMES.index("normal")


def mask_presence(mask):
    """Soft lesion presence of each mask ``(B, H, W, 1)``: the mean of its top :data:`PRESENCE_FRACTION` pixels."""
    flat = keras.ops.reshape(keras.ops.cast(mask, "float32"), (keras.ops.shape(mask)[0], -1))
    k = max(1, int(round(PRESENCE_FRACTION * mask.shape[1] * mask.shape[2])))
    return keras.ops.mean(keras.ops.top_k(flat, k, sorted=False)[0], axis=-1)


@keras.saving.register_keras_serializable(package="busi")
class LesionAgreement(layers.Layer):
    """Identity on the class probabilities that adds the heads' disagreement to the losses (module docstring).

    Args:
        weight: Factor on the penalty; 0 adds nothing.
    """

    def __init__(self, weight: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if weight < 0:
            raise ValueError(f"`consistency` must be >= 0. Received: {weight}")
        self.weight = float(weight)

    def call(self, inputs):
        mask, probs = inputs
        if self.weight > 0:
            lesion = 1.0 - keras.ops.cast(probs[:, NORMAL_INDEX], "float32")
            self.add_loss(self.weight * keras.ops.mean(keras.ops.square(lesion - mask_presence(mask))))
        return probs

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(inputs[1].shape, dtype=inputs[1].dtype)

    def get_config(self) -> dict:
        return {**super().get_config(), "weight": self.weight}


def joint_outputs(mask, deep, num_classes: int, dropout: float, consistency: float) -> dict:
    """The class head on ``deep`` (the encoder's deepest features) beside ``mask``, as the joint output dict."""
    x = layers.Identity(name=DEEP_FEATURES)(deep)
    x = layers.GlobalAveragePooling2D(name="cls_pool")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name="cls_dropout")(x)
    x = layers.Dense(num_classes, name=LOGITS)(x)
    probs = layers.Activation("softmax", dtype="float32", name="class_probabilities")(x)
    if consistency > 0:
        probs = LesionAgreement(consistency, dtype="float32", name="lesion_agreement")([mask, probs])
    return {MASK: mask, LABEL: probs}
