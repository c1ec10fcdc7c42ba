"""Pipeline options as one frozen dataclass of plain values."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import OptionError

TASKS = ("seg", "cls", "joint")
RESIZE_METHODS = ("bilinear", "area")
CROPS = ("frame", "lesion")
CROP_CONTEXT = 1.5
"""A lesion crop's cached context patch, as a multiple of the crop's side (:mod:`pipeline.crop`)."""
MAX_JITTER = (CROP_CONTEXT - 1) / 3
"""The largest ``crop_jitter``: a square shifted by it and scaled by ``1 + jitter`` stays inside the patch."""
IMG_SIZE = 128
"""The model input's side when none is given: the one source of that default (:mod:`config.train` reads it)."""


@dataclass(frozen=True)
class PipelineConfig:
    """How records become batches.

    Attributes:
        img_size: Side of the square model input, in pixels.
        channels: Channels the model takes (1 or 3); gray and colour inputs are converted.
        batch_size: Batch size per replica; the dataset batches
            ``batch_size * num_replicas_in_sync`` of the active strategy.
        augment: Augmentation preset name (see :data:`pipeline.augment.PRESETS`).
        seed: Seed of shuffling and augmentation; the same seed gives the same epochs.
        cache: ``"memory"``, ``"none"``, or a file path prefix for a file cache
            (for data that does not fit in memory).
        shuffle_buffer: Largest shuffle buffer (the dataset size when smaller).
        oversample: Draw classes equally often when training (for segmentation: normal images as
            often as benign and as malignant ones).
        resize: ``"bilinear"`` (antialiased) or ``"area"`` filter for images;
            masks always use nearest neighbour.
        crop: ``"frame"``: the model reads the whole image; ``"lesion"`` (classification): a square
            around the mask's lesion (:mod:`pipeline.crop`), widened by ``crop_margin`` of its side on
            each side and, when training, shifted and scaled by up to ``crop_jitter``.
        crop_margin: The lesion crop's margin on each side, as a share of its side.
        crop_jitter: The lesion crop's largest training shift (share of its side) and scale change.
    """

    img_size: int = IMG_SIZE
    channels: int = 3
    batch_size: int = 8
    augment: str = "light"
    seed: int = 0
    cache: str = "memory"
    shuffle_buffer: int = 2048
    oversample: bool = False
    resize: str = "bilinear"
    crop: str = "frame"
    crop_margin: float = 0.1
    crop_jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.img_size < 8:
            raise OptionError(f"`img_size` must be at least 8. Received: img_size={self.img_size}")
        if self.channels not in (1, 3):
            raise OptionError(f"`channels` must be 1 or 3. Received: channels={self.channels}")
        if self.batch_size < 1:
            raise OptionError(f"`batch_size` must be at least 1. Received: batch_size={self.batch_size}")
        if self.resize not in RESIZE_METHODS:
            raise OptionError(f"`resize` must be one of {list(RESIZE_METHODS)}. Received: resize={self.resize!r}")
        check_crop(self.crop, self.crop_margin, self.crop_jitter)
        from pipeline.augment import PRESETS  # late: augment imports albumentations

        if self.augment not in PRESETS:
            raise OptionError(f"`augment` must be one of {list(PRESETS)}. Received: augment={self.augment!r}")


def check_crop(crop: str, margin: float, jitter: float) -> None:
    """Raise :class:`core.errors.OptionError` on an unknown crop, or a margin or jitter out of range."""
    if crop not in CROPS:
        raise OptionError(f"`crop` must be one of {list(CROPS)}. Received: crop={crop!r}")
    if not 0 <= margin <= 1:
        raise OptionError(f"`crop_margin` must be in [0, 1]. Received: crop_margin={margin}")
    if not 0 <= jitter <= MAX_JITTER:
        raise OptionError(f"`crop_jitter` must be in [0, {MAX_JITTER:.3f}]. Received: crop_jitter={jitter}")
