"""Reading images and masks of any common mode into one canonical form.

The rules, applied the same way everywhere in the project (the tf.data
pipeline and the exported model follow them too):

Images become ``uint8`` arrays of shape ``(H, W, C)``:

- 8-bit gray (``L``) and 1-bit (``1``, read as 0/255) keep one channel.
- 16-bit gray (``I;16``, ``I``) keeps one channel and its high byte
  (``v >> 8``), the conversion ``tf.image.convert_image_dtype`` makes.
- RGB keeps three channels; 16-bit RGB is reduced to 8 bits by Pillow the same way.
- Alpha (``RGBA``, ``LA``, ``PA``) is dropped: ultrasound frames are opaque, and
  ``tf.io.decode_image(channels=3)`` drops it too.
- Palette (``P``) is expanded through its palette to RGB; CMYK and YCbCr JPEGs
  are converted to RGB.

Masks become ``bool`` arrays of shape ``(H, W)``: the file is decoded as above
except that alpha is composited over black (a transparent pixel is background),
colour channels are reduced by their maximum, and a pixel is lesion when its
value is above half of the mask's largest value. So 0/1, 0/255 and 1-bit masks
all work, a JPEG-compressed mask is cut at mid-range, and an all-zero mask is
empty. A mask with more than two distinct values is reported as non-binary.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp"})

_ALPHA_MODES = {"RGBA", "LA", "PA", "La", "RGBa"}


class ImageReadError(OSError):
    """A file could not be decoded as an image (missing, truncated or not an image)."""


@dataclass(frozen=True)
class ImageHeader:
    """What a file says about itself, as stored (before any conversion)."""

    format: str
    mode: str
    width: int
    height: int
    channels: int
    bit_depth: int


def _png_bit_depth(path: Path) -> int | None:
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) == 26 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return int(head[24])
    return None


def _bit_depth(img: Image.Image, path: Path) -> int:
    if img.format == "PNG":
        depth = _png_bit_depth(path)
        if depth is not None:
            return depth
    if img.mode == "1":
        return 1
    if img.mode.startswith("I;16"):
        return 16
    if img.mode in {"I", "F"}:
        return 32
    return 8


def _open(path: Path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError as e:
        raise ImageReadError(f"file not found: {path}") from e
    except UnidentifiedImageError as e:
        raise ImageReadError(f"not a readable image file: {path}") from e
    except (OSError, SyntaxError, ValueError) as e:
        # Pillow reports truncated and corrupt data as OSError/SyntaxError.
        raise ImageReadError(f"cannot decode image {path}: {e}") from e
    return img


def read_header(img: Image.Image, path: Path) -> ImageHeader:
    """Describe an opened image as stored in ``path``."""
    return ImageHeader(
        format=str(img.format or path.suffix.lstrip(".").upper()),
        mode=img.mode,
        width=img.width,
        height=img.height,
        channels=len(img.getbands()),
        bit_depth=_bit_depth(img, path),
    )


def _to_uint8_array(img: Image.Image, composite_alpha: bool) -> np.ndarray:
    """Apply the module's conversion rules; return uint8 (H, W, 1 or 3)."""
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    elif mode == "PA":
        img = img.convert("RGBA")
        mode = "RGBA"
    elif mode in {"CMYK", "YCbCr", "LAB", "HSV"}:
        img = img.convert("RGB")
        mode = "RGB"

    if mode == "1":
        arr = np.asarray(img, dtype=np.uint8) * np.uint8(255)
    elif mode.startswith("I;16") or mode == "I":
        raw = np.asarray(img)
        arr = (np.clip(raw.astype(np.int64), 0, 65535) >> 8).astype(np.uint8)
    elif mode == "F":
        arr = np.clip(np.asarray(img), 0, 255).astype(np.uint8)
    else:
        arr = np.asarray(img, dtype=np.uint8)

    if arr.ndim == 2:
        arr = arr[:, :, None]
    if mode in _ALPHA_MODES:
        color, alpha = arr[:, :, :-1], arr[:, :, -1:]
        if composite_alpha:
            color = (color.astype(np.uint16) * alpha // 255).astype(np.uint8)
        arr = color
    if arr.shape[2] not in (1, 3):
        raise ImageReadError(f"unsupported channel count {arr.shape[2]} (mode {img.mode})")
    return np.ascontiguousarray(arr)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file into a ``uint8`` array of shape ``(H, W, 1|3)``.

    Args:
        path: A PNG, JPEG or BMP file in any mode listed in the module docstring.

    Returns:
        The pixels, one channel for gray files, three for colour files.

    Raises:
        ImageReadError: If the file is missing, truncated or not an image.
    """
    path = Path(path)
    return _to_uint8_array(_open(path), composite_alpha=False)


def read_image_with_header(path: str | Path) -> tuple[np.ndarray, ImageHeader]:
    """Like :func:`read_image`, also returning the stored header."""
    path = Path(path)
    img = _open(path)
    return _to_uint8_array(img, composite_alpha=False), read_header(img, path)


def mask_levels(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a mask file as one ``uint8`` channel and count its distinct values.

    Returns:
        ``(levels, n_distinct)``: the mask after alpha compositing and channel max,
        and how many different values it holds.
    """
    path = Path(path)
    arr = _to_uint8_array(_open(path), composite_alpha=True).max(axis=2)
    return arr, int(np.unique(arr).size)


def binarize_mask(levels: np.ndarray) -> np.ndarray:
    """Apply the mask rule: lesion where the value exceeds half the largest value."""
    top = int(levels.max()) if levels.size else 0
    if top == 0:
        return np.zeros(levels.shape, dtype=bool)
    return levels.astype(np.uint16) * 2 > top


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask file into a ``bool`` array of shape ``(H, W)`` (the module's rule)."""
    levels, _ = mask_levels(path)
    return binarize_mask(levels)


def canonical_pixels(image: np.ndarray) -> np.ndarray:
    """Return the image as gray ``(H, W)`` if all its channels are equal, else unchanged.

    Two files that decode to the same picture (a gray PNG and the same picture
    stored as RGB with R=G=B) have the same canonical pixels.
    """
    if image.ndim == 3 and image.shape[2] == 3:
        if np.array_equal(image[:, :, 0], image[:, :, 1]) and np.array_equal(image[:, :, 0], image[:, :, 2]):
            return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    return image


def pixel_hash(image: np.ndarray) -> str:
    """Hash of the decoded pixels: equal exactly when the canonical pixels are equal."""
    canon = np.ascontiguousarray(canonical_pixels(image))
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(canon.shape).encode())
    h.update(canon.tobytes())
    return h.hexdigest()


def to_gray(image: np.ndarray) -> np.ndarray:
    """Return a float32 ``(H, W)`` gray image (ITU-R BT.601 luma for colour)."""
    if image.ndim == 2:
        return image.astype(np.float32)
    if image.shape[2] == 1:
        return image[:, :, 0].astype(np.float32)
    weights = np.array([0.2989, 0.5870, 0.1140], dtype=np.float32)
    return image.astype(np.float32) @ weights
