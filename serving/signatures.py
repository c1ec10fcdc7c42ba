"""Serving functions: encoded image bytes or preprocessed pixels in, task outputs out.

``serving_default`` takes a batch of encoded images (``tf.string``: PNG, JPEG or
BMP of 8-bit gray, 24 or 32 bits; gray, RGB or RGBA; any size) and runs the evaluation pipeline's
own decoding, channel conversion and resizing (:mod:`pipeline.decode`) inside
the graph, so a served model sees exactly the pixels it was evaluated on.
``serving_preprocessed`` takes float32 ``(N, S, S, C)`` pixels in [0, 255],
what :func:`pipeline.dataset.build_dataset` yields. Normalization lives in the
models themselves, so both feed the model the same values.

Outputs:
    classification: ``probabilities`` float32 ``(N, 3)``, calibrated with the run's temperature
        (``softmax(log(p) / T)``, :mod:`evaluation.calibrate`; the spec's ``temperature``),
        ``class_id`` int64 ``(N,)``, ``class_name`` string ``(N,)``; when the run has a malignancy cut
        (:mod:`evaluation.cut`, the spec's ``malignancy_cut``) also ``malignancy_cut`` float32 ``(N,)`` (the
        cut, repeated) and ``malignant_at_cut`` bool ``(N,)`` (calibrated P(malignant) at or above it).
    segmentation: ``mask_probability`` float32 ``(N, S, S)`` at model resolution, all zeros
        where the run's lesion gate (:mod:`models.postprocess`) declares the image lesion-free,
        then post-processed as the spec says (``largest``: the largest lesion, holes filled),
        ``lesion_area_fraction`` float32 ``(N,)`` (share of pixels >= 0.5; 0 for "no lesion");
        from bytes also ``original_height`` and ``original_width`` int32 ``(N,)``.
    joint (one model, :mod:`models.joint`): both sets, from one call of the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import tensorflow as tf

from core.classes import CLASS_NAMES
from core.errors import OptionError
from models.postprocess import MASK_THRESHOLD, NO_GATE, LesionGate, check_postprocess, postprocess_tf
from pipeline.decode import decode_image_bytes, preprocess

TASKS = ("seg", "cls", "joint")
BYTES_SIGNATURE = "serving_default"
PIXELS_SIGNATURE = "serving_preprocessed"
BYTES_INPUT = "images"
PIXELS_INPUT = "pixels"


@dataclass(frozen=True)
class ServingSpec:
    """What the serving graph needs to know about a trained model."""

    task: str
    img_size: int
    channels: int
    resize: str = "bilinear"
    class_names: tuple[str, ...] = CLASS_NAMES
    gate: LesionGate = NO_GATE
    postprocess: str = "none"
    temperature: float = 1.0
    malignancy_cut: float | None = None

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"`temperature` must be positive. Received: {self.temperature}")
        if self.malignancy_cut is not None and not 0 <= self.malignancy_cut <= 1:
            raise ValueError(f"`malignancy_cut` must be a probability. Received: {self.malignancy_cut}")
        if self.task not in TASKS:
            raise ValueError(f"`task` must be one of {list(TASKS)}. Received: task={self.task!r}")
        if check_postprocess(self.postprocess) != "none" and self.task == "cls":
            raise OptionError(f"`--postprocess {self.postprocess}` is for segmentation models; this one classifies")


def decode_batch(images: tf.Tensor, spec: ServingSpec) -> tuple[tf.Tensor, tf.Tensor]:
    """Encoded images ``(N,)`` -> float32 pixels ``(N, S, S, C)`` and original ``(N, 2)`` height, width."""
    size, channels = spec.img_size, spec.channels

    def one(contents):
        raw = decode_image_bytes(contents)
        return preprocess(raw, size, channels, spec.resize), tf.shape(raw)[:2]

    return tf.map_fn(
        one,
        images,
        fn_output_signature=(
            tf.TensorSpec([size, size, channels], tf.float32),
            tf.TensorSpec([2], tf.int32),
        ),
    )


def model_outputs(model: keras.Model, pixels: tf.Tensor, spec: ServingSpec) -> dict[str, tf.Tensor]:
    """Run ``model`` on preprocessed pixels and name its outputs for serving."""
    out = model(pixels, training=False)
    if spec.task == "joint":
        return {**_class_outputs(out["label"], spec), **mask_outputs(out["mask"], spec)}
    return _class_outputs(out, spec) if spec.task == "cls" else mask_outputs(out, spec)


def _class_outputs(probs: tf.Tensor, spec: ServingSpec) -> dict[str, tf.Tensor]:
    out = tf.cast(probs, tf.float32)
    if spec.temperature != 1.0:
        out = temperature_tf(out, spec.temperature)
    class_id = tf.argmax(out, axis=-1)
    named = {
        "probabilities": out,
        "class_id": class_id,
        "class_name": tf.gather(tf.constant(list(spec.class_names)), class_id),
    }
    if spec.malignancy_cut is not None:
        p_malignant = out[:, spec.class_names.index("malignant")]
        named["malignancy_cut"] = tf.fill(tf.shape(p_malignant), tf.constant(spec.malignancy_cut, tf.float32))
        named["malignant_at_cut"] = p_malignant >= spec.malignancy_cut
    return named


def mask_outputs(mask: tf.Tensor, spec: ServingSpec) -> dict[str, tf.Tensor]:
    prob = postprocess_tf(spec.gate.apply_tf(tf.cast(mask, tf.float32)[..., 0]), spec.postprocess)
    return {
        "mask_probability": prob,
        "lesion_area_fraction": tf.reduce_mean(tf.cast(prob >= MASK_THRESHOLD, tf.float32), axis=[1, 2]),
    }


def temperature_tf(probs: tf.Tensor, temperature: float) -> tf.Tensor:
    """:func:`metrics.calibration.apply_temperature` in TensorFlow: ``softmax(log(probs) / temperature)``."""
    return tf.nn.softmax(tf.math.log(tf.clip_by_value(probs, 1e-7, 1.0)) / temperature, axis=-1)


def serving_fns(model: keras.Model, spec: ServingSpec) -> dict[str, tuple[Callable, list[tf.TensorSpec]]]:
    """The two endpoints as ``{name: (fn, input_signature)}``; ``fn`` takes one batch tensor."""

    def from_bytes(images):
        pixels, hw = decode_batch(images, spec)
        out = model_outputs(model, pixels, spec)
        if spec.task != "cls":
            out["original_height"] = hw[:, 0]
            out["original_width"] = hw[:, 1]
        return out

    def from_pixels(pixels):
        return model_outputs(model, pixels, spec)

    return {
        BYTES_SIGNATURE: (from_bytes, [tf.TensorSpec([None], tf.string, name=BYTES_INPUT)]),
        PIXELS_SIGNATURE: (
            from_pixels,
            [tf.TensorSpec([None, spec.img_size, spec.img_size, spec.channels], tf.float32, name=PIXELS_INPUT)],
        ),
    }


def compiled_serving_fns(model: keras.Model, spec: ServingSpec) -> dict[str, Callable]:
    """The endpoints as ``tf.function`` s, for in-process prediction without an export."""
    return {
        name: tf.function(fn, input_signature=signature, reduce_retracing=True)
        for name, (fn, signature) in serving_fns(model, spec).items()
    }
