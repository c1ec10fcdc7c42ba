"""The diagnosis in one serving graph: segmenter, gate, lesion crops, lesion classifier (bytes in, answers out).

What :mod:`evaluation.diagnosis` scores, in TensorFlow: each encoded image is decoded and resized for the
segmenter, whose map is gated (and post-processed) as its run's serving graph does; its lesions
(:func:`models.lesions.lesion_bounds_tf`: the largest :data:`models.lesions.MAX_LESIONS`) are boxed in the
image's own pixels, cut out of the decoded image as the lesion classifier was trained to read them
(:mod:`pipeline.crop`, ``tf.image.crop_and_resize``) and classified; the image is normal without a
lesion, else as suspicious as its most suspicious lesion.

Outputs (``serving_default``, and :data:`TTA_SIGNATURE` with flip test-time augmentation of both models;
a batch of encoded images ``(N,)``): the segmenter's ``mask_probability``,
``lesion_area_fraction``, ``original_height`` and ``original_width`` (:mod:`serving.signatures`);
``lesion_boxes`` float32 ``(N, K, 4)`` (``[y0, x0, y1, x1]`` in the image's pixels), ``lesion_found`` bool
``(N, K)``, ``lesion_p_malignant`` float32 ``(N, K)`` (0 where no lesion), each lesion's calibrated
P(malignant) over benign and malignant; ``probabilities`` ``(N, 3)`` (normal (1, 0, 0), else (0, 1 - p, p)
with p the most suspicious lesion's), ``class_id``, ``class_name``, and with a cut ``malignancy_cut`` and
``malignant_at_cut``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import tensorflow as tf

from core.classes import CLASS_NAMES
from core.errors import OptionError
from models.lesions import MAX_LESIONS, lesion_bounds_tf
from models.postprocess import NO_GATE
from pipeline.crop import crop_at
from pipeline.decode import decode_image_bytes, to_channels
from serving.export import ExportResult, export_servable, write_endpoints
from serving.signatures import BYTES_INPUT, BYTES_SIGNATURE, ServingSpec, decode_batch, mask_outputs, temperature_tf

if TYPE_CHECKING:
    from config.train import TrainConfig

TTA_SIGNATURE = "serving_tta"
"""The diagnosis' endpoint with flip test-time augmentation (``predict.py --tta``; TF Serving's ``signature_name``)."""


@dataclass(frozen=True)
class DiagnosisSpec:
    """The two models' serving specs and how the lesion classifier crops.

    Attributes:
        seg: The segmenter's spec (its gate and post-processing).
        lesion: The lesion classifier's spec (its temperature); its cut is not used.
        crop_margin: The classifier's ``--crop-margin``.
        malignancy_cut: The diagnosis' cut on P(malignant) (:func:`evaluation.diagnosis.diagnosis_cut`), or None.
    """

    seg: ServingSpec
    lesion: ServingSpec
    crop_margin: float
    malignancy_cut: float | None = None


def _crops(images: tf.Tensor, boxes: tf.Tensor, spec: DiagnosisSpec) -> tf.Tensor:
    """Each image's ``K`` lesion crops ``(N * K, S, S, C)`` at ``boxes`` ``(N, K, 4)`` (its own pixels)."""
    size, channels = spec.lesion.img_size, spec.lesion.channels

    def of_image(args):
        contents, bounds = args
        image = to_channels(decode_image_bytes(contents), channels)

        def one(b):
            return crop_at(image, b, size, spec.crop_margin, spec.lesion.resize)

        return tf.map_fn(one, bounds, fn_output_signature=tf.TensorSpec([size, size, channels], tf.float32))

    out = tf.map_fn(
        of_image, (images, boxes), fn_output_signature=tf.TensorSpec([MAX_LESIONS, size, size, channels], tf.float32)
    )
    return tf.reshape(out, [-1, size, size, channels])


def _answers(p_lesion: tf.Tensor, found: tf.Tensor, spec: DiagnosisSpec) -> dict[str, tf.Tensor]:
    """Each image's three-class probabilities from its lesions' P(malignant) ``(N, K)``."""
    p = tf.reduce_max(tf.where(found, p_lesion, tf.zeros_like(p_lesion)), axis=1)
    lesion = tf.reduce_any(found, axis=1)
    zero = tf.zeros_like(p)
    probs = tf.where(lesion[:, None], tf.stack([zero, 1.0 - p, p], 1), tf.stack([zero + 1.0, zero, zero], 1))
    class_id = tf.argmax(probs, axis=-1)
    out = {"probabilities": probs, "class_id": class_id, "class_name": tf.gather(tf.constant(CLASS_NAMES), class_id)}
    if spec.malignancy_cut is not None:
        out["malignancy_cut"] = tf.fill(tf.shape(p), tf.constant(spec.malignancy_cut, tf.float32))
        out["malignant_at_cut"] = probs[:, CLASS_NAMES.index("malignant")] >= spec.malignancy_cut
    return out


def _lesion_map(seg_model: keras.Model, pixels: tf.Tensor, spec: DiagnosisSpec, tta: bool) -> dict[str, tf.Tensor]:
    """The segmenter's gated (and post-processed) map; with ``tta`` combined with the mirrored image's by
    :func:`evaluation.tta.combine_views`' rule (averaged; all zeros when the gate empties either view),
    post-processed after the combination, as ``evaluate.py --tta`` does."""
    if not tta:
        return mask_outputs(seg_model(pixels, training=False), spec.seg)
    plain = replace(spec.seg, postprocess="none")
    views = [
        mask_outputs(seg_model(x, training=False), plain)["mask_probability"] for x in (pixels, pixels[:, :, ::-1])
    ]
    kept = tf.logical_and(*[tf.reduce_any(v != 0, axis=[1, 2]) for v in views])
    mean = tf.where(kept[:, None, None], (views[0] + views[1][:, :, ::-1]) / 2.0, 0.0)
    return mask_outputs(mean[..., None], replace(spec.seg, gate=NO_GATE))


def _lesion_probs(lesion_model: keras.Model, crops: tf.Tensor, spec: DiagnosisSpec, tta: bool) -> tf.Tensor:
    """The lesion classifier's calibrated probabilities of ``crops``; with ``tta`` averaged with the mirrored
    crops' (each view calibrated first)."""
    views = []
    for x in (crops, crops[:, :, ::-1])[: 1 + tta]:
        probs = tf.cast(lesion_model(x, training=False), tf.float32)
        views.append(temperature_tf(probs, spec.lesion.temperature) if spec.lesion.temperature != 1.0 else probs)
    return tf.add_n(views) / float(len(views))


def diagnosis_fns(
    seg_model: keras.Model, lesion_model: keras.Model, spec: DiagnosisSpec
) -> dict[str, tuple[Callable, list[tf.TensorSpec]]]:
    """The diagnosis' endpoints as ``{name: (fn, input_signature)}`` (bytes only: the crops need the image):
    ``serving_default``, and :data:`TTA_SIGNATURE`, the same with flip test-time augmentation of both models."""

    def diagnose(images, tta: bool):
        pixels, hw = decode_batch(images, spec.seg)
        out = _lesion_map(seg_model, pixels, spec, tta)
        bounds, found = lesion_bounds_tf(out["mask_probability"])
        scale = tf.cast(tf.concat([hw, hw], axis=1), tf.float32) / float(spec.seg.img_size)
        boxes = bounds * scale[:, None, :]
        probs = _lesion_probs(lesion_model, _crops(images, boxes, spec), spec, tta)
        benign, malignant = probs[:, CLASS_NAMES.index("benign")], probs[:, CLASS_NAMES.index("malignant")]
        p_lesion = tf.reshape(malignant / tf.maximum(benign + malignant, 1e-12), tf.shape(found))
        p_lesion = tf.where(found, p_lesion, tf.zeros_like(p_lesion))
        out.update(
            original_height=hw[:, 0],
            original_width=hw[:, 1],
            lesion_boxes=boxes * tf.cast(found, tf.float32)[..., None],
        )
        out.update(lesion_found=found, lesion_p_malignant=p_lesion, **_answers(p_lesion, found, spec))
        return out

    signature = [tf.TensorSpec([None], tf.string, name=BYTES_INPUT)]
    return {
        BYTES_SIGNATURE: (lambda images: diagnose(images, tta=False), signature),
        TTA_SIGNATURE: (lambda images: diagnose(images, tta=True), signature),
    }


def diagnosis_spec(seg_cfg: TrainConfig, seg_dir: Path, lesion_cfg: TrainConfig, lesion_dir: Path, postprocess: str):
    """The :class:`DiagnosisSpec` of a segmentation run and a lesion classifier's run (fold folders), with what
    each fitted: the segmenter's gate, the classifier's temperature, and the diagnosis' cut when one was
    fitted for this pair (:func:`evaluation.diagnosis.diagnosis_cut`)."""
    from evaluation.diagnosis import load_diagnosis_cut
    from evaluation.run_files import load_fitted_temperature
    from serving.export import spec_from_config

    if lesion_cfg.crop != "lesion":
        raise OptionError(f"the diagnosis needs a lesion classifier's run (--crop lesion); {lesion_dir} reads frames")
    if seg_cfg.task != "seg":
        raise OptionError(f"the diagnosis needs a segmentation run; {seg_dir} is {seg_cfg.task}")
    fitted = load_fitted_temperature(lesion_dir)
    lesion = ServingSpec(
        task="cls",
        img_size=lesion_cfg.img_size,
        channels=lesion_cfg.channels,
        temperature=fitted.temperature if fitted is not None else 1.0,
    )
    cut = load_diagnosis_cut(lesion_dir, seg_dir, postprocess)
    seg = spec_from_config(seg_cfg, seg_dir, postprocess)
    return DiagnosisSpec(seg, lesion, lesion_cfg.crop_margin, cut.threshold if cut is not None else None)


def export_diagnosis(
    seg_model: keras.Model, lesion_model: keras.Model, spec: DiagnosisSpec, root: str | Path, name: str,
    version: int | None = None, source: str = "",
) -> ExportResult:  # fmt: skip
    """Export the diagnosis as ``root/name/version``, in TF Serving's layout with warmup requests (see
    :func:`serving.export.export_servable`); ``export.json`` records ``task: diagnosis`` and both specs."""
    described = {"task": "diagnosis", "seg": asdict(spec.seg), "lesion": asdict(spec.lesion)}
    described.update(crop_margin=spec.crop_margin, malignancy_cut=spec.malignancy_cut, class_names=list(CLASS_NAMES))
    endpoints = diagnosis_fns(seg_model, lesion_model, spec)

    def write(path: Path, info: dict) -> Path:
        return write_endpoints([seg_model, lesion_model], endpoints, path, name, described, info)

    return export_servable(write, root, name, version, source)
