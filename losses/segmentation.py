"""Dice-family segmentation losses, computed per image.

``keras.losses.Dice`` and ``keras.losses.Tversky`` divide by the union plus a
tiny epsilon, so an image whose mask and prediction are both empty (every
normal image in BUSI) scores 0 and costs a full loss of 1. These losses add a
smoothing term to numerator and denominator instead, so an empty mask
predicted empty scores 1, and they average over images rather than pooling
pixels over the batch, so a small lesion counts as much as a large one.
"""

from __future__ import annotations

import keras
from keras import ops

from core.errors import OptionError

SMOOTH = 1.0
TOP_FRACTION = 0.005
"""Share of an image's pixels whose mean probability scores the image in :func:`image_presence_bce`."""


def _flat(y_true, y_pred):
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    batch = ops.shape(y_pred)[0]
    return ops.reshape(y_true, (batch, -1)), ops.reshape(y_pred, (batch, -1))


def per_image_dice(y_true, y_pred, smooth: float = SMOOTH):
    """Soft Dice of each image, shape ``(B,)``; 1 when mask and prediction are both empty."""
    t, p = _flat(y_true, y_pred)
    inter = ops.sum(t * p, axis=1)
    return (2.0 * inter + smooth) / (ops.sum(t, axis=1) + ops.sum(p, axis=1) + smooth)


def per_image_tversky(y_true, y_pred, alpha: float, beta: float, smooth: float = SMOOTH):
    """Tversky index of each image: ``TP / (TP + alpha FN + beta FP)``, smoothed."""
    t, p = _flat(y_true, y_pred)
    tp = ops.sum(t * p, axis=1)
    fn = ops.sum(t * (1.0 - p), axis=1)
    fp = ops.sum((1.0 - t) * p, axis=1)
    return (tp + smooth) / (tp + alpha * fn + beta * fp + smooth)


def image_presence_bce(y_true, y_pred, top_fraction: float = 0.005):
    """Image-level cross-entropy: does the image hold a lesion, scored by its most lesion-like pixels.

    The image's score is the mean probability of its top ``top_fraction`` of pixels; the target is
    1 if the true mask has any lesion pixel, else 0. On a normal image this pushes exactly the pixels
    that would form a false lesion below threshold, where the per-image Dice of an empty mask gives
    almost no gradient (it is saturated near 1 once a few hundred pixels are predicted).
    Shape ``(B,)``.
    """
    pixels = 1
    for d in y_pred.shape[1:]:
        if d is None:
            raise ValueError(f"image_presence_bce needs maps of a known size. Received shape {y_pred.shape}")
        pixels *= int(d)
    t, p = _flat(y_true, y_pred)
    k = max(1, round(top_fraction * pixels))
    score = ops.mean(ops.top_k(p, k)[0], axis=1)
    has_lesion = ops.cast(ops.max(t, axis=1) > 0.5, "float32")
    return keras.losses.binary_crossentropy(has_lesion[:, None], score[:, None])


@keras.saving.register_keras_serializable(package="busi")
class SoftDiceLoss(keras.losses.Loss):
    """``1 - Dice`` per image, averaged over the batch.

    Args:
        smooth: Added to numerator and denominator; makes empty-vs-empty score 1.
    """

    def __init__(self, smooth: float = SMOOTH, name: str = "soft_dice", **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.smooth = smooth

    def call(self, y_true, y_pred):
        return 1.0 - per_image_dice(y_true, y_pred, self.smooth)

    def get_config(self) -> dict:
        return {**super().get_config(), "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="busi")
class BceDiceLoss(keras.losses.Loss):
    """Binary cross-entropy (mean over pixels) plus soft Dice loss, per image.

    Args:
        bce_weight: Weight of the cross-entropy term.
        dice_weight: Weight of the Dice term.
        smooth: Dice smoothing.
        image_weight: Weight of :func:`image_presence_bce` (0: off; ``--loss bce_dice_image``: 1).
        top_fraction: Share of pixels that score the image in that term.
    """

    def __init__(
        self,
        bce_weight: float = 1.0,
        dice_weight: float = 1.0,
        smooth: float = SMOOTH,
        image_weight: float = 0.0,
        top_fraction: float = TOP_FRACTION,
        name: str = "bce_dice",
        **kwargs,
    ) -> None:
        super().__init__(name=name, **kwargs)
        if not 0.0 < top_fraction <= 1.0:
            raise ValueError(f"`top_fraction` must be in (0, 1]. Received: top_fraction={top_fraction}")
        self.bce_weight = bce_weight
        self.dice_weight = dice_weight
        self.smooth = smooth
        self.image_weight = image_weight
        self.top_fraction = top_fraction

    def call(self, y_true, y_pred):
        # Cross-entropy on y_pred as given: Keras then finds the logits behind our sigmoid output and
        # computes it from them. Reshaping first would hide them, and the clipped probabilities
        # would give no gradient at all to pixels that are confidently wrong (|logit| > 16).
        bce = keras.losses.binary_crossentropy(ops.cast(y_true, y_pred.dtype), y_pred)
        bce = ops.mean(ops.reshape(bce, (ops.shape(bce)[0], -1)), axis=1)
        loss = self.bce_weight * bce + self.dice_weight * (1.0 - per_image_dice(y_true, y_pred, self.smooth))
        if self.image_weight:
            loss = loss + self.image_weight * image_presence_bce(y_true, y_pred, self.top_fraction)
        return loss

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "bce_weight": self.bce_weight,
            "dice_weight": self.dice_weight,
            "smooth": self.smooth,
            "image_weight": self.image_weight,
            "top_fraction": self.top_fraction,
        }


@keras.saving.register_keras_serializable(package="busi")
class FocalTverskyLoss(keras.losses.Loss):
    """Focal Tversky loss (Abraham and Khan, 2019): ``(1 - TI) ** gamma`` per image.

    Args:
        alpha: Weight of false negatives (> beta favours recall of small lesions).
        beta: Weight of false positives.
        gamma: Focal exponent; below 1 emphasizes hard images (the paper's 1/(4/3)).
        smooth: Smoothing of the index.
    """

    def __init__(
        self,
        alpha: float = 0.7,
        beta: float = 0.3,
        gamma: float = 0.75,
        smooth: float = SMOOTH,
        name: str = "focal_tversky",
        **kwargs,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.alpha, self.beta, self.gamma, self.smooth = alpha, beta, gamma, smooth

    def call(self, y_true, y_pred):
        ti = per_image_tversky(y_true, y_pred, self.alpha, self.beta, self.smooth)
        return ops.power(ops.maximum(1.0 - ti, 0.0), self.gamma)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "alpha": self.alpha,
            "beta": self.beta,
            "gamma": self.gamma,
            "smooth": self.smooth,
        }


def _bce_dice_image(**kwargs) -> BceDiceLoss:
    return BceDiceLoss(**{"image_weight": 1.0, "name": "bce_dice_image", **kwargs})


SEG_LOSSES = {
    "dice": SoftDiceLoss,
    "bce_dice": BceDiceLoss,
    "bce_dice_image": _bce_dice_image,
    "focal_tversky": FocalTverskyLoss,
}
"""Segmentation losses by ``--loss`` name."""


def get_seg_loss(name: str, **kwargs) -> keras.losses.Loss:
    """Instantiate the segmentation loss ``name``.

    Raises:
        ValueError: If ``name`` is not in :data:`SEG_LOSSES`.
    """
    if name not in SEG_LOSSES:
        raise OptionError(f"`loss` must be one of {list(SEG_LOSSES)}. Received: loss={name!r}")
    return SEG_LOSSES[name](**kwargs)
