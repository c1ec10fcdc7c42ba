"""Pictures that prediction writes: PNG files (lossless, fast to encode) and overlays of a mask and a caption."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from core.atomic import atomic_write

PNG_LEVEL = 1
"""zlib level of the PNGs written (lossless at any level; 1 encodes several times faster than the default)."""


def encode_png(image: np.ndarray) -> bytes:
    """``image`` (``(H, W)`` or ``(H, W, 1|3|4)`` uint8, RGB order) as PNG bytes (OpenCV, :data:`PNG_LEVEL`)."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    elif image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR if image.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image), [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL])
    if not ok:
        raise OSError(f"could not encode a {image.shape} image as PNG")
    return buf.tobytes()


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image.copy()


def label_image(canvas: np.ndarray, text: str) -> None:
    """Write ``text`` in the top-left corner on a dark box, scaled to the image."""
    h, w = canvas.shape[:2]
    scale = max(0.4, min(h, w) / 600)
    thick = max(1, round(scale * 1.5))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = max(2, round(4 * scale))
    cv2.rectangle(canvas, (0, 0), (tw + 2 * pad, th + base + 2 * pad), (0, 0, 0), -1)
    cv2.putText(canvas, text, (pad, th + pad), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)


def overlay(image: np.ndarray, text: str, mask: np.ndarray | None = None) -> np.ndarray:
    """RGB copy of ``image`` with the mask's outline (if any) and ``text`` in the corner."""
    canvas = _rgb(image)
    if mask is not None and mask.any():
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        thick = max(1, round(min(canvas.shape[:2]) / 250))
        cv2.drawContours(canvas, contours, -1, (255, 220, 0), thick, cv2.LINE_AA)
    label_image(canvas, text)
    return canvas


def draw_boxes(canvas: np.ndarray, boxes: np.ndarray, texts: list[str]) -> np.ndarray:
    """Draw each box ``[y0, x0, y1, x1]`` (image pixels) on RGB ``canvas`` (in place) with its text above it."""
    thick = max(1, round(min(canvas.shape[:2]) / 250))
    scale = max(0.4, min(canvas.shape[:2]) / 800)
    for (y0, x0, y1, x1), text in zip(np.asarray(boxes).round().astype(int), texts, strict=True):
        cv2.rectangle(canvas, (int(x0), int(y0)), (int(x1) - 1, int(y1) - 1), (255, 80, 80), thick, cv2.LINE_AA)
        cv2.putText(canvas, text, (int(x0), max(12, int(y0) - 4)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 80, 80), 1,
                    cv2.LINE_AA)  # fmt: skip
    return canvas


def write_png(path: Path, image: np.ndarray) -> None:
    atomic_write(path, lambda p: p.write_bytes(encode_png(image)))
