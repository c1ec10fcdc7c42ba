"""How a model scales its input pixels: a fixed scale, or each image standardized on its own.

Every model takes float32 pixels in [0, 255]. ``input_norm="fixed"`` (the default) keeps
today's behaviour: the segmenters divide by 255 and the classifiers feed the pixels to
their backbone's ImageNet normalization. ``input_norm="image"`` standardizes each image by
its own mean and standard deviation first (over pixels and channels), so a scanner's gain,
brightness and contrast setting does not reach the network; being inside the model, the
export and ``predict.py`` apply it too.
"""

from __future__ import annotations

import keras
from keras import layers

from core.errors import OptionError
from models.options import INPUT_NORMS

PIXEL_MEAN, PIXEL_STD = 127.5, 64.0
"""Where a classifier's standardized image is placed back on the pixel scale its backbone's
ImageNet normalization expects: mean 127.5, standard deviation 64 (about 4 SD across [0, 255])."""


@keras.saving.register_keras_serializable(package="busi")
class ImageStandardization(layers.Layer):
    """Each image minus its mean, over its standard deviation, then ``* scale + offset``.

    Statistics are per image over height, width and channels. ``epsilon`` (in input units)
    bounds the divisor, so a flat image maps to ``offset`` instead of dividing by zero.
    """

    def __init__(self, scale: float = 1.0, offset: float = 0.0, epsilon: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.scale, self.offset, self.epsilon = float(scale), float(offset), float(epsilon)

    def call(self, inputs):
        x = keras.ops.cast(inputs, "float32")
        mean = keras.ops.mean(x, axis=(1, 2, 3), keepdims=True)
        std = keras.ops.sqrt(keras.ops.mean(keras.ops.square(x - mean), axis=(1, 2, 3), keepdims=True))
        z = (x - mean) / keras.ops.maximum(std, self.epsilon)
        return keras.ops.cast(z * self.scale + self.offset, self.compute_dtype)

    def get_config(self) -> dict:
        return {**super().get_config(), "scale": self.scale, "offset": self.offset, "epsilon": self.epsilon}


def check_input_norm(input_norm: str) -> None:
    """Raise a clear error for an unknown ``input_norm``."""
    if input_norm not in INPUT_NORMS:
        raise OptionError(f"`input_norm` must be one of {list(INPUT_NORMS)}. Received: input_norm={input_norm!r}")


def scale_for_segmenter(inputs, input_norm: str):
    """A segmenter's first step: pixels / 255 (``"fixed"``) or per-image z-scores (``"image"``)."""
    check_input_norm(input_norm)
    if input_norm == "image":
        return ImageStandardization(name="image_standardization")(inputs)
    return layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)


def scale_for_classifier(inputs, input_norm: str):
    """A classifier's first step: the pixels as they are (``"fixed"``), or each image standardized and
    put back at mean :data:`PIXEL_MEAN`, standard deviation :data:`PIXEL_STD` (``"image"``)."""
    check_input_norm(input_norm)
    if input_norm == "image":
        return ImageStandardization(PIXEL_STD, PIXEL_MEAN, name="image_standardization")(inputs)
    return inputs
