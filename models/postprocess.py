"""Segmentation post-processing: the lesion gate, and keeping only the largest lesion.

A segmenter's map is turned into an answer in two steps: pixels at or above
:data:`MASK_THRESHOLD` are lesion, and then the whole image is declared empty
unless its lesion covers at least ``min_area`` of the image *and* the mean
probability over those pixels (the map's confidence) is at least
``min_confidence``. An image declared empty gets an all-zero probability map,
so every consumer that thresholds the map (evaluation, ``predict.py``, a
client of the SavedModel) sees the same empty mask.

The two thresholds are fitted on a run's validation fold
(:mod:`evaluation.gate`) and saved with the run as ``lesion_gate.json``. The
rule is written twice, in NumPy for evaluation and in TensorFlow for the
serving graph; tests hold them to the same answers.

``--postprocess largest`` (:func:`postprocess_np`, :func:`postprocess_tf`) then
keeps the largest 8-connected lesion of each thresholded map and fills its holes
(background pixels that no 4-connected path joins to the image's border): the
map keeps its probabilities inside that lesion, is 0 outside it, and at least
:data:`MASK_THRESHOLD` in the filled holes, so thresholding it gives the cleaned
mask. It runs after the gate. The NumPy version uses SciPy's labelling; the
TensorFlow one spreads each lesion's largest label along row and column runs
(and, for 8-connectivity, over 3x3 neighbourhoods) until nothing changes; tests
hold them to the same answers, ties between equal-sized lesions included.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from scipy import ndimage

from core.errors import OptionError, RunFileError
from models.options import POSTPROCESS

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
        raise RunFileError(f"{path} does not hold a lesion gate ({e}); delete it or train again") from e
    return doc


def load_gate(fold_dir: str | Path) -> LesionGate:
    """The gate saved in a run (or fold) folder; :data:`NO_GATE` if it has none (runs before the gate).

    Raises:
        ValueError: If the file exists but does not hold a gate.
    """
    doc = read_gate_file(fold_dir)
    return NO_GATE if doc is None else doc["gate"]


def check_postprocess(name: str) -> str:
    """``name`` if it is one of :data:`POSTPROCESS`.

    Raises:
        ValueError: Otherwise.
    """
    if name not in POSTPROCESS:
        raise OptionError(f"`--postprocess` must be one of {list(POSTPROCESS)}. Received: {name!r}")
    return name


def count_lesions(probs: np.ndarray) -> np.ndarray:
    """8-connected lesions (pixels >= :data:`MASK_THRESHOLD`) of each map ``(N, H, W[, 1])``; int ``(N,)``."""
    maps = probs.reshape(probs.shape[:3]) >= MASK_THRESHOLD
    return np.array([ndimage.label(m, structure=np.ones((3, 3), bool))[1] for m in maps], dtype=np.int64)


def _largest_np(fg: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of one bool map; ties go to the one whose last pixel comes first."""
    labels, n = ndimage.label(fg, structure=np.ones((3, 3), bool))
    if n == 0:
        return fg
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    last = ndimage.maximum(np.arange(fg.size).reshape(fg.shape), labels, index=np.arange(1, n + 1))
    candidates = np.flatnonzero(sizes == sizes.max())
    best = candidates[np.argmin(np.asarray(last)[candidates])] + 1
    return ndimage.binary_fill_holes(labels == best)


def postprocess_np(probs: np.ndarray, name: str) -> np.ndarray:
    """``probs`` ``(N, H, W[, 1])`` post-processed as ``name`` says (see the module's docstring).

    Raises:
        ValueError: On an unknown ``name``.
    """
    if check_postprocess(name) == "none":
        return probs
    maps = probs.reshape(probs.shape[:3])
    out = np.zeros_like(maps)
    for i, m in enumerate(maps):
        fg = m >= MASK_THRESHOLD
        keep = _largest_np(fg)
        kept = keep & fg
        out[i] = np.where(kept, m, np.where(keep, np.maximum(m, MASK_THRESHOLD), 0.0))
    return out.reshape(probs.shape)


def _run_max(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Each pixel of ``mask`` ``(N, H, W)`` set to the largest of ``values`` over its horizontal run of ``mask``."""
    left = tf.pad(mask[:, :, :-1], [[0, 0], [0, 0], [1, 0]])
    flat_mask = tf.reshape(mask, [-1])
    runs = tf.cumsum(tf.cast(tf.reshape(mask & ~left, [-1]), tf.int32))
    runs = tf.where(flat_mask, runs, 0)  # run 0: every pixel outside the mask, whose value is 0
    best = tf.math.unsorted_segment_max(tf.reshape(values, [-1]), runs, tf.reduce_max(runs) + 1)
    return tf.reshape(tf.gather(best, runs), tf.shape(values))


def spread_max(values: tf.Tensor, mask: tf.Tensor, diagonal: bool) -> tf.Tensor:
    """Spread the largest of ``values`` ``(N, H, W)`` (>= 0, 0 outside ``mask``) over each connected part of ``mask``.

    Parts are 8-connected with ``diagonal``, else 4-connected. Each round takes the maximum along every
    horizontal run, then every vertical one (and with ``diagonal`` over each 3x3 neighbourhood), until
    nothing changes: rounds grow with the turns of a part, not its length.
    """
    fmask = tf.cast(mask, values.dtype)

    def step(v, _changed):
        new = _run_max(v, mask)
        new = tf.transpose(_run_max(tf.transpose(new, [0, 2, 1]), tf.transpose(mask, [0, 2, 1])), [0, 2, 1])
        if diagonal:
            p = tf.pad(new, [[0, 0], [1, 1], [1, 1]])
            h, w = tf.shape(new)[1], tf.shape(new)[2]
            shifted = [p[:, a : a + h, b : b + w] for a in (0, 2) for b in (0, 2)]
            new = tf.reduce_max(tf.stack([new, *shifted]), axis=0) * fmask
        return new, tf.reduce_any(new != v)

    out, _ = tf.while_loop(lambda _v, changed: changed, step, (values * fmask, tf.constant(True)))
    return out


def postprocess_tf(probs: tf.Tensor, name: str) -> tf.Tensor:
    """:func:`postprocess_np` in TensorFlow, for maps ``(N, H, W)`` (serving graphs).

    Raises:
        ValueError: On an unknown ``name``.
    """
    if check_postprocess(name) == "none":
        return probs
    shape = tf.shape(probs)
    n, h, w = shape[0], shape[1], shape[2]
    fg = probs >= MASK_THRESHOLD
    ids = tf.broadcast_to(tf.reshape(tf.range(1, h * w + 1, dtype=tf.int32), tf.stack([1, h, w])), shape)
    labels = spread_max(ids, fg, diagonal=True)  # each lesion named by its last pixel's index + 1; 0: background
    segments = labels + tf.range(n)[:, None, None] * (h * w + 1)
    sizes = tf.math.unsorted_segment_sum(tf.ones_like(labels), segments, n * (h * w + 1))
    sizes = tf.reshape(sizes, tf.stack([n, h * w + 1])) * tf.concat([[0], tf.ones([h * w], tf.int32)], 0)
    best = tf.argmax(sizes, axis=1, output_type=tf.int32)  # ties: the smallest label, the earliest last pixel
    kept = (labels == best[:, None, None]) & fg
    border = tf.pad(tf.zeros_like(ids[:, 1:-1, 1:-1]), [[0, 0], [1, 1], [1, 1]], constant_values=1)
    outside = spread_max(border, ~kept, diagonal=False)  # background joined to the border
    keep = kept | (outside == 0)
    floor = tf.constant(MASK_THRESHOLD, probs.dtype)
    return tf.where(kept, probs, tf.where(keep, tf.maximum(probs, floor), tf.zeros_like(probs)))


def resize_to_native(prob: np.ndarray, height: int, width: int) -> np.ndarray:
    """A probability map at model resolution, ``(S, S)`` or ``(S, S, 1)``, resized to the image's own size
    (bilinear, float32): the map ``predict.py`` thresholds into the mask it writes, and evaluation scores."""
    import cv2  # late: only the native-resolution paths need it

    small = np.asarray(prob, dtype=np.float32)
    return cv2.resize(small[..., 0] if small.ndim == 3 else small, (width, height), interpolation=cv2.INTER_LINEAR)
