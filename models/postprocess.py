"""The lesion gate: when a segmenter's probability map counts as "no lesion".

A segmenter's map is turned into an answer in two steps: pixels at or above
:data:`MASK_THRESHOLD` are lesion, and then the whole image is declared empty
unless its lesion covers at least ``min_area`` of the image *and* the mean
probability over those pixels (the map's confidence) is at least
``min_confidence``. An image declared empty gets an all-zero probability map,
so every consumer that thresholds the map (evaluation, ``predict.py``, a
client of the SavedModel) sees the same empty mask.

The two thresholds are fitted on a run's validation fold
(:mod:`training.gate`) and saved with the run as ``lesion_gate.json``. The
rule is written twice, in NumPy for evaluation and in TensorFlow for the
serving graph; tests hold them to the same answers.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

MASK_THRESHOLD = 0.5
"""Probability at which a pixel counts as lesion."""
GATE_FILE = "lesion_gate.json"
"""A run's (or fold's) fitted gate, beside ``weights/``."""


@dataclass(frozen=True)
class LesionGate:
    """Declare an image lesion-free unless its thresholded mask is large and confident enough.

    Attributes:
        min_area: Smallest share of the image's pixels at or above :data:`MASK_THRESHOLD`.
        min_confidence: Smallest mean probability over those pixels.
    """

    min_area: float = 0.0
    min_confidence: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_area <= 1.0:
            raise ValueError(f"`min_area` must be a share of the image in [0, 1]. Received: {self.min_area}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"`min_confidence` must be a probability in [0, 1]. Received: {self.min_confidence}")

    def present_np(self, probs: np.ndarray) -> np.ndarray:
        """Whether each map of ``probs`` ``(N, H, W[, 1])`` keeps its lesion; bool ``(N,)``."""
        area, confidence = map_statistics(probs)
        return (area > 0) & (area >= self.min_area) & (confidence >= self.min_confidence)

    def apply_np(self, probs: np.ndarray) -> np.ndarray:
        """``probs`` with the maps of lesion-free images set to zero."""
        keep = self.present_np(probs).reshape((-1,) + (1,) * (probs.ndim - 1))
        return np.where(keep, probs, np.zeros_like(probs))

    def present_tf(self, probs: tf.Tensor) -> tf.Tensor:
        """:meth:`present_np` in TensorFlow, for maps ``(N, H, W)``; bool ``(N,)``."""
        lesion = tf.cast(probs >= MASK_THRESHOLD, tf.float32)
        pixels = tf.reduce_sum(lesion, axis=[1, 2])
        area = pixels / tf.cast(tf.shape(probs)[1] * tf.shape(probs)[2], tf.float32)
        confidence = tf.reduce_sum(probs * lesion, axis=[1, 2]) / tf.maximum(pixels, 1.0)
        return (pixels > 0) & (area >= self.min_area) & (confidence >= self.min_confidence)

    def apply_tf(self, probs: tf.Tensor) -> tf.Tensor:
        """:meth:`apply_np` in TensorFlow, for maps ``(N, H, W)``."""
        return probs * tf.cast(self.present_tf(probs), probs.dtype)[:, None, None]

    def to_dict(self) -> dict[str, float]:
        """The thresholds as plain numbers."""
        return asdict(self)


NO_GATE = LesionGate()
"""Keeps every map as it is (an empty map stays empty)."""


def map_statistics(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lesion area (share of pixels >= :data:`MASK_THRESHOLD`) and its mean probability, per map.

    Args:
        probs: Probability maps ``(N, H, W[, 1])``.

    Returns:
        ``(area, confidence)``, each ``(N,)``; confidence is 0 for an empty map.
    """
    n = probs.shape[0]
    flat = probs.reshape(n, -1).astype(np.float32)
    lesion = flat >= MASK_THRESHOLD
    pixels = lesion.sum(axis=1)
    confidence = np.where(lesion, flat, 0.0).sum(axis=1) / np.maximum(pixels, 1)
    return pixels / flat.shape[1], confidence


def read_gate_file(fold_dir: str | Path) -> dict | None:
    """The parsed ``lesion_gate.json`` of a run (or fold) folder, with its ``gate`` checked; None if absent.

    Raises:
        ValueError: If the file exists but does not hold a gate.
    """
    path = Path(fold_dir) / GATE_FILE
    if not path.is_file():
        return None
    doc = json.loads(path.read_text(encoding="utf-8"))
    try:
        doc["gate"] = LesionGate(**doc["gate"])
        doc["halves"] = [(tuple(h["ids"]), LesionGate(**h["gate"])) for h in doc.get("halves", [])]
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path} does not hold a lesion gate ({e}); delete it or train again") from e
    return doc


def load_gate(fold_dir: str | Path) -> LesionGate:
    """The gate saved in a run (or fold) folder; :data:`NO_GATE` if it has none (runs before the gate).

    Raises:
        ValueError: If the file exists but does not hold a gate.
    """
    doc = read_gate_file(fold_dir)
    return NO_GATE if doc is None else doc["gate"]
