"""Grad-CAM heat maps for ``predict.py --explain``: a run folder's classifier on encoded images, or a
diagnosis' lesion classifier on each lesion's crop.

The images are decoded and resized by the serving graph's own functions (:mod:`serving.signatures`), and a
lesion's crop is cut as the diagnosis cuts it (:func:`pipeline.crop.crop_at`), so the map explains exactly
the pixels the prediction came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf

from core.classes import CLASS_NAMES
from core.errors import OptionError
from evaluation.run_files import load_inference_model, resolve_run
from models.gradcam import cam_model, grad_cam
from models.registry import get_model_entry
from pipeline.crop import crop_at, square_box
from pipeline.decode import decode_image_bytes, to_channels
from serving.export import spec_from_config
from serving.signatures import ServingSpec, decode_batch


class Explainer:
    """Grad-CAM (:mod:`models.gradcam`) of a run folder's classifier or joint model's class head, on the
    registry's layer for it (:meth:`models.registry.ModelEntry.cam_layer_for`).

    Raises:
        ValueError: If the run does not classify, or its model names no Grad-CAM layer.
    """

    def __init__(self, run_dir: str | Path, weights: str = "best") -> None:
        cfg, file = resolve_run(run_dir, weights)
        layer = get_model_entry(cfg.model).cam_layer_for(cfg.task)
        if cfg.task == "seg" or layer is None:
            raise OptionError(f"`--explain` draws Grad-CAM for classifiers; {run_dir} is a {cfg.task} run")
        self._cfg = cfg
        self._spec = self._pixels(cfg, run_dir)
        self._cam = cam_model(load_inference_model(file), layer)

    @staticmethod
    def _pixels(cfg, run_dir: str | Path) -> ServingSpec | None:
        """How an image becomes the model's input (:func:`serving.export.spec_from_config`, which refuses a
        lesion classifier: it reads crops)."""
        return spec_from_config(cfg)

    def __call__(self, payloads: Sequence[bytes], answers: Sequence[dict[str, np.ndarray]]) -> list[np.ndarray]:
        """One map per image, in [0, 1] at the model's input size, of the class each answer gives (the
        argmax of its ``probabilities``)."""
        pixels, _ = decode_batch(tf.constant(list(payloads), tf.string), self._spec)
        class_ids = [int(np.argmax(a["probabilities"])) for a in answers]
        maps, _, _ = grad_cam(self._cam, pixels.numpy(), np.asarray(class_ids))
        return list(maps)


class LesionExplainer(Explainer):
    """Grad-CAM of a diagnosis' lesion classifier (``--crop lesion``) on each lesion it read: the crop's map of
    the lesion's own class (malignant when its P(malignant) is at least 0.5, else benign), put back where the
    crop lies in the image. Pixels outside every crop are NaN (no map there).

    Raises:
        OptionError: If the run is not a lesion classifier.
    """

    @staticmethod
    def _pixels(cfg, run_dir: str | Path) -> ServingSpec | None:
        if cfg.crop != "lesion":
            raise OptionError(f"the diagnosis explains a lesion classifier (--crop lesion); {run_dir} reads frames")
        return None

    def __call__(self, payloads: Sequence[bytes], answers: Sequence[dict[str, np.ndarray]]) -> list[np.ndarray]:
        """One ``(H, W)`` map per image (its own size): each lesion's map inside its crop, NaN elsewhere (all NaN
        for an image without a lesion)."""
        cfg, maps = self._cfg.pipeline(), []
        for payload, answer in zip(payloads, answers, strict=True):
            image = to_channels(decode_image_bytes(tf.constant(payload)), cfg.channels)
            heat = np.full(image.shape[:2], np.nan, np.float32)
            found = np.asarray(answer["lesion_found"], bool)
            boxes, p = np.asarray(answer["lesion_boxes"])[found], np.asarray(answer["lesion_p_malignant"])[found]
            if len(boxes):
                crops = np.stack([crop_at(image, b, cfg.img_size, cfg.crop_margin, cfg.resize).numpy() for b in boxes])
                ids = [CLASS_NAMES.index("malignant" if q >= 0.5 else "benign") for q in p]
                for box, cam in zip(boxes, grad_cam(self._cam, crops, np.asarray(ids))[0], strict=True):
                    paste_max(heat, cam, square_box(box, cfg.crop_margin).numpy())
            maps.append(heat)
        return maps


def paste_max(heat: np.ndarray, cam: np.ndarray, window: np.ndarray) -> None:
    """Resize ``cam`` to the square ``window`` ``[y0, x0, y1, x1]`` (image pixels, may reach outside ``heat``) and
    write it into ``heat`` in place, keeping the larger value where a map is already there."""
    y0, x0, y1, x1 = np.round(window).astype(int)
    if y1 <= y0 or x1 <= x0:
        return
    big = cv2.resize(cam.astype(np.float32), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    h, w = heat.shape
    ty0, tx0, ty1, tx1 = max(y0, 0), max(x0, 0), min(y1, h), min(x1, w)
    if ty1 <= ty0 or tx1 <= tx0:
        return
    part = big[ty0 - y0 : ty1 - y0, tx0 - x0 : tx1 - x0]
    heat[ty0:ty1, tx0:tx1] = np.fmax(heat[ty0:ty1, tx0:tx1], part)


def heat_overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """RGB ``image`` (uint8, gray or RGB) with ``cam`` (any size, [0, 1]) resized onto it as a JET heat map;
    where ``cam`` is NaN (at the image's size: outside a lesion's crop) the image is left as it is."""
    h, w = image.shape[:2]
    rgb = (np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]).astype(np.float32)
    heat = cam.astype(np.float32)
    if heat.shape != (h, w):
        heat = cv2.resize(heat, (w, h), interpolation=cv2.INTER_LINEAR)
    shown = np.isfinite(heat)[..., None]
    level = np.uint8(255 * np.clip(np.nan_to_num(heat), 0, 1))
    colour = cv2.cvtColor(cv2.applyColorMap(level, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    blended = np.where(shown, (1 - alpha) * rgb + alpha * colour, rgb)
    return np.uint8(np.clip(blended, 0, 255))
