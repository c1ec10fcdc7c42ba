"""Records -> batches: the one place where cases become tf.data datasets.

Order of stages: decode -> channels -> resize -> cache -> (training: shuffle,
oversample, augment) -> format for the task -> batch (global batch of the
active strategy) -> prefetch. Decoded and resized tensors are cached, so only
the first epoch pays for decoding.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from core.classes import CLASS_NAMES
from core.errors import DataError, Problem
from data.discover import Case
from data.scan import merge_masks
from pipeline.augment import Augmenter, augment_tf
from pipeline.config import TASKS, PipelineConfig
from pipeline.crop import context_patch, crop_at, crop_patch, jitter_crop, lesion_box
from pipeline.decode import decode_image_file, merge_mask_files, preprocess, resize_mask, to_channels

AUTOTUNE = tf.data.AUTOTUNE
NUM_CLASSES = len(CLASS_NAMES)


def global_batch_size(config: PipelineConfig, strategy: tf.distribute.Strategy | None = None) -> int:
    """Per-replica batch size times the replicas of ``strategy`` (default: the active one)."""
    strategy = strategy or tf.distribute.get_strategy()
    return config.batch_size * strategy.num_replicas_in_sync


def _mask_loader(records: Sequence[Case]):
    """Python reader for cases with a BMP mask (TensorFlow cannot decode every BMP)."""

    def load(index: np.int64, height: np.int32, width: np.int32) -> np.ndarray:
        case = records[int(index)]
        mask, _, problems = merge_masks(case, (int(height), int(width)))
        if problems:
            raise ValueError(str(problems[0]))
        return mask.astype(np.uint8)[:, :, None]

    return load


def check_present(records: Sequence[Case]) -> None:
    """Raise if a file of ``records`` is gone since the dataset was inspected (before tf.data fails on it).

    Raises:
        DataError: Naming every missing image and mask.
    """
    gone = [
        Problem("missing_file", "gone since the dataset was inspected; restore it or inspect again", p, r.case_id)
        for r in records
        for p in (r.image, *r.masks)
        if not os.path.isfile(p)
    ]
    if gone:
        raise DataError(gone)


def _cache_fingerprint(records: Sequence[Case], task: str, config: PipelineConfig) -> str:
    h = hashlib.sha1()
    crop = (config.crop, config.crop_margin) if config.crop == "lesion" else ()
    h.update(repr((task, config.img_size, config.channels, config.resize, *crop)).encode())
    for r in records:
        for p in (r.image, *r.masks):
            st = os.stat(p)
            h.update(f"{r.case_id}|{p}|{st.st_size}|{st.st_mtime_ns}|{r.label}".encode())
    return h.hexdigest()[:16]


def _load(records: Sequence[Case], task: str, config: PipelineConfig) -> tf.data.Dataset:
    """Decoded, converted and resized elements ``{"image", "mask"?, "label"}``.

    With ``config.crop == "lesion"`` the image is the lesion's context patch (:func:`pipeline.crop.context_patch`)
    and the mask only places it.
    """
    lesion_crop = config.crop == "lesion"
    needs_mask = task in ("seg", "joint") or lesion_crop
    columns = {
        "index": np.arange(len(records), dtype=np.int64),
        "path": [str(r.image) for r in records],
        "label": np.array([CLASS_NAMES.index(r.label) for r in records], np.int32),
    }
    if needs_mask:
        # PNG/JPEG masks are decoded in-graph (no Python, so no GIL in the hot path);
        # a case with a BMP mask is read by the data layer's reader instead.
        columns["masks"] = tf.ragged.constant([[str(m) for m in r.masks] for r in records], dtype=tf.string)
        columns["mask_in_graph"] = np.array(
            [all(m.suffix.lower() != ".bmp" for m in r.masks) for r in records], dtype=bool
        )
    base = tf.data.Dataset.from_tensor_slices(columns)
    load_mask = _mask_loader(records)
    size = config.img_size

    def load(e):
        raw = decode_image_file(e["path"])
        out = {"label": e["label"]}
        if not lesion_crop:
            out["image"] = tf.ensure_shape(
                preprocess(raw, size, config.channels, config.resize), [size, size, config.channels]
            )
        if needs_mask:
            shape = tf.shape(raw)
            mask = tf.cond(
                e["mask_in_graph"],
                lambda: merge_mask_files(e["masks"], shape[0], shape[1]),
                lambda: tf.ensure_shape(
                    tf.numpy_function(load_mask, [e["index"], shape[0], shape[1]], tf.uint8, stateful=False),
                    [None, None, 1],
                ),
            )
            if lesion_crop:
                box = lesion_box(mask, config.crop_margin)
                out["image"] = context_patch(to_channels(raw, config.channels), box, size, config.resize)
            else:
                out["mask"] = tf.ensure_shape(resize_mask(mask, size), [size, size, 1])
        return out

    return base.map(load, num_parallel_calls=AUTOTUNE)


def _cache(ds: tf.data.Dataset, records: Sequence[Case], task: str, config: PipelineConfig, tag: str):
    if config.cache == "none":
        return ds
    if config.cache == "memory":
        return ds.cache()
    # A file cache is keyed by the data and the preprocessing, so a stale cache
    # from other files or another image size is never read back.
    prefix = Path(config.cache)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    return ds.cache(f"{prefix}-{tag}-{_cache_fingerprint(records, task, config)}")


def _class_balanced_counts(labels: np.ndarray, seed: tf.Tensor) -> tf.Tensor:
    """How often each record appears in one oversampled epoch (int64 ``(n,)``, summing to ``n``).

    The ``n`` draws are split evenly over the classes present; each class's share is
    drawn uniformly, with replacement, from its own records.
    """
    n = len(labels)
    present = sorted(set(labels.tolist()))
    shares = [n // len(present) + (i < n % len(present)) for i in range(len(present))]
    counts = tf.zeros([n], tf.int64)
    for i, (k, share) in enumerate(zip(present, shares, strict=True)):
        members = tf.constant(np.flatnonzero(labels == k), tf.int64)
        picks = tf.random.stateless_uniform(
            [share], seed=seed + i, minval=0, maxval=tf.size(members, tf.int64), dtype=tf.int64
        )
        counts += tf.math.bincount(tf.gather(members, picks), minlength=n, maxlength=n, dtype=tf.int64)
    return counts


def _oversampled(ds: tf.data.Dataset, records: Sequence[Case], config: PipelineConfig) -> tf.data.Dataset:
    """Draw every present class equally often; an epoch keeps the dataset's length.

    Each epoch reads the cached dataset once, in full (so the cache completes in the
    first epoch), repeating each element as often as that epoch's class-balanced
    draw says; minority cases recur and the majority class is subsampled.
    """
    labels = np.array([CLASS_NAMES.index(r.label) for r in records])
    epoch_seeds = tf.data.Dataset.random(seed=config.seed, rerandomize_each_iteration=True).batch(2).take(1)

    def epoch(seed):
        counts = _class_balanced_counts(labels, seed)
        return ds.enumerate().flat_map(lambda i, e: tf.data.Dataset.from_tensors(e).repeat(counts[i]))

    return epoch_seeds.flat_map(epoch)


def _format(task: str):
    def fmt(e):
        if task == "seg":
            return e["image"], tf.cast(e["mask"], tf.float32)
        one_hot = tf.one_hot(e["label"], NUM_CLASSES, dtype=tf.float32)
        if task == "cls":
            return e["image"], one_hot
        return e["image"], {"mask": tf.cast(e["mask"], tf.float32), "label": one_hot}

    return fmt


def _lesion_crops(ds: tf.data.Dataset, config: PipelineConfig, training: bool) -> tf.data.Dataset:
    """The model's input read from each cached context patch: jittered with a fresh seed when training, else
    its centre (:mod:`pipeline.crop`)."""
    size = config.img_size
    if not training:
        return ds.map(lambda e: dict(e, image=crop_patch(e["image"], size)), num_parallel_calls=AUTOTUNE)
    seeds = tf.data.Dataset.random(seed=config.seed + 1, rerandomize_each_iteration=True).batch(2)

    def crop(e, seed):
        return dict(e, image=jitter_crop(e["image"], size, config.crop_jitter, seed))

    return tf.data.Dataset.zip(ds, seeds).map(crop, num_parallel_calls=AUTOTUNE)


def _training_stream(ds: tf.data.Dataset, records: list[Case], config: PipelineConfig) -> tf.data.Dataset:
    """Oversampled (if configured), shuffled every epoch, and augmented with a fresh seed per example."""
    if config.oversample:
        ds = _oversampled(ds, records, config)
    ds = ds.shuffle(min(len(records), config.shuffle_buffer), seed=config.seed, reshuffle_each_iteration=True)
    if config.crop == "lesion":
        ds = _lesion_crops(ds, config, training=True)
    if config.augment == "none":
        return ds
    augmenter = Augmenter(config.augment)
    seeds = tf.data.Dataset.random(seed=config.seed, rerandomize_each_iteration=True)

    def aug(e, seed):
        image, mask = augment_tf(augmenter, e["image"], e.get("mask"), seed)
        out = dict(e, image=image)
        if mask is not None:
            out["mask"] = mask
        return out

    return tf.data.Dataset.zip(ds, seeds).map(aug, num_parallel_calls=AUTOTUNE)


def build_dataset(
    records: Sequence[Case],
    task: str,
    config: PipelineConfig,
    training: bool,
    strategy: tf.distribute.Strategy | None = None,
    drop_remainder: bool | None = None,
) -> tf.data.Dataset:
    """Build the batched dataset of ``records`` for ``task``.

    Args:
        records: Cases to serve (e.g. one fold's train or val ids looked up in
            :func:`data.discover.discover`'s result).
        task: ``"seg"`` -> ``(image, mask)``; ``"cls"`` -> ``(image, one_hot)``;
            ``"joint"`` -> ``(image, {"mask": mask, "label": one_hot})``.
            Images are float32 ``(B, S, S, C)`` in [0, 255]; masks float32
            ``(B, S, S, 1)`` of exactly 0 and 1; one-hot labels float32 ``(B, 3)``.
        config: Pipeline options.
        training: Shuffle, oversample (if configured) and augment; evaluation and
            prediction datasets are never augmented and keep record order.
        strategy: Strategy whose replicas set the global batch (default: the active one).
        drop_remainder: Drop the last partial batch (default: when training, if there
            is at least one full batch).

    Returns:
        A prefetched ``tf.data.Dataset``; one pass is one epoch.

    Raises:
        ValueError: On an unknown task or an empty record list.
        DataError: If a file of the records is gone since the dataset was inspected.

    Example:
        >>> cases = discover("data_dir")
        >>> ds = build_dataset(list(cases.values()), "seg", PipelineConfig(img_size=128), True)
    """
    if task not in TASKS:
        raise ValueError(f"`task` must be one of {list(TASKS)}. Received: task={task!r}")
    records = list(records)
    if not records:
        raise ValueError("`records` must not be empty")
    check_present(records)
    n = len(records)
    ds = _cache(_load(records, task, config), records, task, config, "train" if training else "eval")
    if training:
        ds = _training_stream(ds, records, config)
    elif config.crop == "lesion":
        ds = _lesion_crops(ds, config, training=False)
    ds = ds.map(_format(task), num_parallel_calls=AUTOTUNE)
    batch = global_batch_size(config, strategy)
    if drop_remainder is None:
        drop_remainder = training and n >= batch
    ds = ds.batch(batch, drop_remainder=drop_remainder)
    return ds.prefetch(AUTOTUNE)


def build_crop_dataset(images: Sequence[str | Path], bounds: np.ndarray, config: PipelineConfig) -> tf.data.Dataset:
    """The lesion crops a classifier reads of lesions found elsewhere (a segmenter's): batches of float32
    ``(B, S, S, C)``, in order.

    Args:
        images: The image file of each lesion.
        bounds: ``(n, 4)``: each lesion's bounding box ``[y0, x0, y1, x1]`` in its image's pixels; the crop is
            :func:`pipeline.crop.square_box` of it with ``config.crop_margin``, cut as training cut it.
        config: The lesion classifier's pipeline options.
    """
    if len(images) != len(bounds):
        raise ValueError(f"{len(images)} images but {len(bounds)} boxes")
    columns = {"path": [str(p) for p in images], "bounds": np.asarray(bounds, np.float32).reshape(-1, 4)}
    size = config.img_size

    def crop(e):
        image = to_channels(decode_image_file(e["path"]), config.channels)
        return crop_at(image, e["bounds"], size, config.crop_margin, config.resize)

    ds = tf.data.Dataset.from_tensor_slices(columns).map(crop, num_parallel_calls=AUTOTUNE)
    return ds.batch(config.batch_size).prefetch(AUTOTUNE)
