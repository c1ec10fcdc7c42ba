"""Albumentations presets applied to image and mask together, seeded per sample.

Every transform moves image and mask in the same call, so they stay aligned;
masks are warped with nearest-neighbour interpolation and stay exactly 0/1.
Each sample's transform is seeded from the dataset's seed stream, so the same
seed gives the same augmented epoch however tf.data schedules its threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import albumentations as A
import cv2
import numpy as np
import tensorflow as tf

from core.errors import OptionError

# tf.data runs several augmentations at once; OpenCV's own thread pool on top
# of that only oversubscribes the cores.
cv2.setNumThreads(1)

_BORDER = {"border_mode": cv2.BORDER_CONSTANT, "fill": 0, "fill_mask": 0}


def _light() -> list[A.BasicTransform]:
    return [
        A.HorizontalFlip(p=0.5),
        A.Affine(scale=(0.9, 1.1), translate_percent=(-0.05, 0.05), rotate=(-10, 10), p=0.5, **_BORDER),
        A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.15, p=0.5),
        A.RandomGamma(gamma_limit=(85, 115), p=0.3),
    ]


def _strong() -> list[A.BasicTransform]:
    return [
        *_light(),
        A.OneOf(
            [
                A.ElasticTransform(alpha=30, sigma=6, **_BORDER),
                A.GridDistortion(num_steps=5, distort_limit=0.2, **_BORDER),
            ],
            p=0.3,
        ),
        A.OneOf(
            [
                A.MultiplicativeNoise(multiplier=(0.85, 1.15), elementwise=True),  # speckle
                A.GaussNoise(std_range=(0.02, 0.06)),
            ],
            p=0.3,
        ),
        A.GaussianBlur(blur_limit=(3, 5), sigma_limit=(0.3, 1.2), p=0.2),
        A.CoarseDropout(
            num_holes_range=(1, 4),
            hole_height_range=(0.04, 0.12),
            hole_width_range=(0.04, 0.12),
            fill=0,
            p=0.3,
        ),
    ]


class DepthGain(A.ImageOnlyTransform):
    """Depth-dependent gain: brightness multiplied by ``exp(slope * (depth - 0.5))`` down the image.

    Time-gain compensation and attenuation differ between scanners and operators: one
    machine's deep tissue is another's dark band. ``depth`` runs from 0 (top row, the
    transducer) to 1 (bottom row); a slope drawn in ``slope_range`` darkens the depth (negative)
    or the near field (positive), leaving the middle row as it was.
    """

    def __init__(self, slope_range: tuple[float, float] = (-0.6, 0.6), p: float = 0.5) -> None:
        super().__init__(p=p)
        self.slope_range = slope_range

    def get_params(self) -> dict[str, float]:
        """Draw the slope from the transform's seeded generator."""
        return {"slope": self.py_random.uniform(*self.slope_range)}

    def apply(self, img: np.ndarray, slope: float = 0.0, **params) -> np.ndarray:
        """Scale each row of ``img`` (uint8) by its gain."""
        h = img.shape[0]
        gain = np.exp(slope * (np.linspace(0.0, 1.0, h, dtype=np.float32) - 0.5))
        scaled = img.astype(np.float32) * gain.reshape((h,) + (1,) * (img.ndim - 1))
        return np.clip(scaled, 0, 255).astype(np.uint8)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        """Arguments for Albumentations' serialization."""
        return ("slope_range",)


def _scanner() -> list[A.BasicTransform]:
    """What changes with the scanner and the operator, in the spirit of ``usaugment`` (Ultrasound augmentation).

    Zoom and aspect (crops to the breast region, other depths and widths), gain and contrast,
    depth-dependent gain, gamma, speckle, resolution loss or blur, and compression artefacts.
    """
    return [
        A.HorizontalFlip(p=0.5),
        A.Affine(
            scale={"x": (0.8, 1.4), "y": (0.8, 1.4)},
            translate_percent=(-0.1, 0.1),
            rotate=(-10, 10),
            p=0.8,
            **_BORDER,
        ),
        A.RandomBrightnessContrast(brightness_limit=0.3, contrast_limit=0.3, p=0.8),
        DepthGain(slope_range=(-0.6, 0.6), p=0.5),
        A.RandomGamma(gamma_limit=(60, 160), p=0.5),
        A.MultiplicativeNoise(multiplier=(0.8, 1.2), elementwise=True, p=0.3),
        A.OneOf(
            [
                A.GaussianBlur(blur_limit=(3, 5), sigma_limit=(0.3, 1.2)),
                A.Downscale(scale_range=(0.4, 0.8), interpolation_pair={"downscale": 3, "upscale": 1}),
            ],
            p=0.4,
        ),
        A.ImageCompression(quality_range=(40, 90), p=0.3),
    ]


def _flip_rotate() -> list[A.BasicTransform]:
    return [A.HorizontalFlip(p=0.5), A.Rotate(limit=15, p=0.5, **_BORDER)]


PRESETS: dict[str, Callable[[], list[A.BasicTransform]]] = {
    "none": list,
    "light": _light,
    "strong": _strong,
    "flip_rotate": _flip_rotate,
    "scanner": _scanner,
}
"""Augmentation presets by name: ``none``; ``light`` (flips, small affine,
brightness/contrast, gamma); ``strong`` (``light`` plus elastic or grid
distortion, speckle or Gaussian noise, blur, coarse dropout); ``flip_rotate``
(horizontal flip and +-15 degree rotation, the segmentation benchmark's protocol);
``scanner`` (what another scanner or site changes: zoom and aspect, gain, contrast,
depth-dependent gain, gamma, speckle, resolution loss or blur, JPEG artefacts)."""


def preset_transforms(name: str) -> list[A.BasicTransform]:
    """Return fresh transform objects of preset ``name``.

    Raises:
        ValueError: If ``name`` is not a preset.
    """
    if name not in PRESETS:
        raise OptionError(f"`augment` must be one of {list(PRESETS)}. Received: augment={name!r}")
    return PRESETS[name]()


class Augmenter:
    """Callable applying a preset to ``(image, mask)`` with a per-sample seed.

    The ``Compose`` is built once per worker thread (a Compose holds random state,
    so threads must not share one).
    """

    def __init__(self, preset: str) -> None:
        preset_transforms(preset)  # validate the name early
        self.preset = preset
        self._local = threading.local()

    def _compose(self) -> A.Compose:
        compose = getattr(self._local, "compose", None)
        if compose is None:
            compose = A.Compose(preset_transforms(self.preset))
            self._local.compose = compose
        return compose

    def __call__(self, image: np.ndarray, mask: np.ndarray | None, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Augment ``uint8`` image ``(H, W, C)`` and optional ``uint8`` mask ``(H, W, 1)``."""
        compose = self._compose()
        compose.set_random_seed(int(seed) % (2**32))
        if mask is None:
            return compose(image=image)["image"], None
        out = compose(image=image, mask=mask[:, :, 0])
        return out["image"], out["mask"][:, :, None]


def augment_tf(
    augmenter: Augmenter, image: tf.Tensor, mask: tf.Tensor | None, seed: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor | None]:
    """Apply ``augmenter`` inside a tf.data map; static shapes are restored afterwards.

    Args:
        augmenter: The augmentation to run.
        image: float32 ``(S, S, C)`` in [0, 255].
        mask: uint8 ``(S, S, 1)`` of 0/1, or None.
        seed: int64 scalar, this sample's seed.

    Returns:
        ``(image, mask)`` with the same shapes and dtypes as given.
    """
    img_u8 = tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)
    if mask is None:
        out = tf.numpy_function(lambda i, s: augmenter(i, None, s)[0], [img_u8, seed], tf.uint8, stateful=False)
        out_mask = None
    else:
        out, out_mask = tf.numpy_function(
            lambda i, m, s: augmenter(i, m, s),
            [img_u8, mask, seed],
            [tf.uint8, tf.uint8],
            stateful=False,
        )
        out_mask = tf.ensure_shape(out_mask, mask.shape)
    out = tf.ensure_shape(out, image.shape)
    return tf.cast(out, tf.float32), out_mask
