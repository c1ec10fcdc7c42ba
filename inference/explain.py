"""Grad-CAM heat maps for ``predict.py --explain``: a run folder's classifier on encoded images.

The images are decoded and resized by the serving graph's own functions (:mod:`serving.signatures`),
so the map explains exactly the pixels the prediction came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf

from core.errors import OptionError
from evaluation.run_files import load_inference_model, resolve_run
from models.gradcam import cam_model, grad_cam
from models.registry import get_model_entry
from serving.export import spec_from_config
from serving.signatures import decode_batch


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
        self._spec = spec_from_config(cfg)
        self._cam = cam_model(load_inference_model(file), layer)

    def __call__(self, payloads: Sequence[bytes], class_ids: Sequence[int]) -> np.ndarray:
        """Maps ``(N, S, S)`` in [0, 1] at the model's input size, for the class of each image."""
        pixels, _ = decode_batch(tf.constant(list(payloads), tf.string), self._spec)
        maps, _, _ = grad_cam(self._cam, pixels.numpy(), np.asarray(class_ids))
        return maps


def heat_overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """RGB ``image`` (uint8, gray or RGB) with ``cam`` (any size, [0, 1]) resized onto it as a JET heat map."""
    h, w = image.shape[:2]
    rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
    heat = cv2.resize(cam.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    colour = cv2.cvtColor(cv2.applyColorMap(np.uint8(255 * np.clip(heat, 0, 1)), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return np.uint8(np.clip((1 - alpha) * rgb.astype(np.float32) + alpha * colour, 0, 255))
