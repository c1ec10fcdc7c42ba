"""A grid of augmented training images with their mask outlines, for a person to look at."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from core.atomic import atomic_write  # noqa: E402
from core.classes import CLASS_NAMES  # noqa: E402
from data.discover import Case  # noqa: E402
from pipeline.config import PipelineConfig  # noqa: E402
from pipeline.dataset import build_dataset  # noqa: E402


def _outline(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    rgb = np.clip(image, 0, 255).astype(np.uint8)
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    rgb = np.ascontiguousarray(rgb)
    if mask is not None and mask.any():
        contours, _ = cv2.findContours(mask[:, :, 0].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(rgb, contours, -1, (40, 255, 80), 1)
    return rgb


def save_preview(
    records: Sequence[Case],
    task: str,
    config: PipelineConfig,
    out: str | Path,
    rows: int = 4,
    cols: int = 6,
) -> Path:
    """Draw ``rows x cols`` augmented training samples with mask outlines and labels.

    Args:
        records: Cases to sample from.
        task: ``"seg"`` (outlines) or ``"cls"`` (labels only); ``"joint"`` shows both.
        config: Pipeline options (the augmentation preset, size, seed).
        out: PNG file to write (atomically).
        rows: Grid rows.
        cols: Grid columns.

    Returns:
        The written path.
    """
    n = rows * cols
    cfg = PipelineConfig(**{**config.__dict__, "batch_size": n, "cache": "none"})
    x, y = next(iter(build_dataset(records, "joint" if task != "cls" else "cls", cfg, training=True)))
    images = x.numpy()
    masks = y["mask"].numpy() if isinstance(y, dict) else None
    labels = (y["label"] if isinstance(y, dict) else y).numpy().argmax(axis=1)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.2, rows * 2.35), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k >= len(images):
            continue
        ax.imshow(_outline(images[k], None if masks is None else masks[k]))
        ax.set_title(CLASS_NAMES[labels[k]], fontsize=9)
    fig.suptitle(
        f"augment={config.augment}  size={config.img_size}  seed={config.seed}"
        + ("  (green: mask outline)" if masks is not None else ""),
        fontsize=10,
    )
    fig.tight_layout()
    out = Path(out)
    atomic_write(out, lambda p: fig.savefig(p, dpi=100, format="png"))
    plt.close(fig)
    return out
