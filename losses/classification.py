"""Classification losses for the imbalanced three-class problem.

- ``ce``: categorical cross-entropy.
- ``weighted_ce``: cross-entropy with each image weighted by its class's
  balanced weight ``n / (k n_c)`` from the training split (what Keras'
  ``class_weight`` does, but as a loss, so it also works in our distributed loop
  and is saved with the model).
- ``focal``: ``keras.losses.CategoricalFocalCrossentropy`` (Lin et al., 2017)
  with per-class ``alpha`` proportional to the inverse class frequency of the
  training split, normalized to sum to 1, and configurable ``gamma``.

All take optional label smoothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from core.classes import class_frequencies, class_weights
from core.errors import OptionError

CLS_LOSSES = ("ce", "weighted_ce", "focal")


@keras.saving.register_keras_serializable(package="busi")
class WeightedCategoricalCrossentropy(keras.losses.Loss):
    """Cross-entropy of each image times the weight of its (one-hot) class.

    Args:
        class_weights: One weight per class, in output order.
        label_smoothing: Smoothing of the one-hot targets inside the cross-entropy.
    """

    def __init__(
        self,
        class_weights: Sequence[float],
        label_smoothing: float = 0.0,
        name: str = "weighted_categorical_crossentropy",
        **kwargs,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.class_weights = [float(w) for w in class_weights]
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        weight = ops.sum(y_true * ops.convert_to_tensor(self.class_weights, "float32"), axis=-1)
        y_pred = ops.cast(y_pred, "float32")
        ce = keras.losses.categorical_crossentropy(y_true, y_pred, label_smoothing=self.label_smoothing)
        return weight * ce

    def get_config(self) -> dict:
        return {**super().get_config(), "class_weights": self.class_weights, "label_smoothing": self.label_smoothing}


def focal_alpha(labels: Sequence[str]) -> list[float]:
    """Per-class focal ``alpha``: inverse class frequency, normalized to sum 1 (0 for absent classes)."""
    inv = [1.0 / f if f else 0.0 for f in class_frequencies(labels)]
    total = sum(inv)
    return [v / total for v in inv]


def get_cls_loss(
    name: str,
    train_labels: Sequence[str],
    gamma: float = 2.0,
    label_smoothing: float = 0.0,
) -> keras.losses.Loss:
    """The classification loss ``name`` with class statistics of ``train_labels``.

    Raises:
        ValueError: If ``name`` is not in :data:`CLS_LOSSES`, or ``gamma`` / ``label_smoothing`` is out of range.
    """
    if name not in CLS_LOSSES:
        raise OptionError(f"`loss` must be one of {list(CLS_LOSSES)} for --task cls. Received: loss={name!r}")
    if gamma < 0:
        raise OptionError(f"`gamma` must be >= 0. Received: gamma={gamma}")
    if not 0 <= label_smoothing < 1:
        raise OptionError(f"`label_smoothing` must be in [0, 1). Received: label_smoothing={label_smoothing}")
    if name == "ce":
        return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
    if name == "weighted_ce":
        weights = class_weights(train_labels)
        return WeightedCategoricalCrossentropy([weights[i] for i in range(len(weights))], label_smoothing)
    return keras.losses.CategoricalFocalCrossentropy(
        alpha=focal_alpha(train_labels), gamma=gamma, label_smoothing=label_smoothing
    )
