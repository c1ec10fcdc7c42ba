"""A seeded generator of ultrasound-like breast images in the BUSI layout.

Each image is built the way a B-mode scan looks: a skin line, subcutaneous fat
with dark lobules, textured fibroglandular tissue crossed by bright ligaments,
a striated muscle layer, multiplicative speckle stretched laterally, depth
attenuation, log-like compression and electronic noise. Lesions are hypoechoic:

- benign: smooth ovals, usually wider than tall, circumscribed, often with a
  thin bright capsule and posterior enhancement;
- malignant: irregular or spiculated outlines, usually taller than wide,
  indistinct margins, often posterior shadowing;
- normal: no lesion (the dark fat lobules are there in every class).

The classes overlap on purpose (some benign lesions are lobulated or shadow,
some malignant ones are wider than tall), so the data is learnable but not
trivial. The mask is the exact region the lesion was drawn in. A few cases
have two lesions (two mask files, ``_mask`` and ``_mask_1``, as in BUSI) and a
few are re-acquisitions of an earlier case with calipers drawn on it
(near-duplicates, as in BUSI).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from core.classes import CLASS_NAMES
from core.errors import OptionError, OutputExistsError

GENERATOR_VERSION = 1


@dataclass(frozen=True)
class SynthConfig:
    """Parameters of a synthetic dataset.

    Attributes:
        per_class: Images per class.
        size: Image height in pixels; widths vary from 1.0 to 1.3 times it, like BUSI scans.
        seed: Seed; the same config gives byte-identical files.
        two_lesion_rate: Share of lesion cases with a second lesion (second mask file).
        reacquired_rate: Share of cases that re-acquire the previous case with calipers.
    """

    per_class: int = 100
    size: int = 256
    seed: int = 0
    two_lesion_rate: float = 0.05
    reacquired_rate: float = 0.04

    def __post_init__(self) -> None:
        if self.per_class < 1:
            raise OptionError(f"`per_class` must be at least 1. Received: per_class={self.per_class}")
        if not 64 <= self.size <= 2048:
            raise OptionError(f"`size` must be in 64..2048. Received: size={self.size}")


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std low-frequency random field."""
    n = rng.standard_normal(shape).astype(np.float32)
    n = cv2.GaussianBlur(n, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    return (n - n.mean()) / (n.std() + 1e-6)


def _wavy_line(rng: np.random.Generator, w: int, y0: float, amp: float) -> np.ndarray:
    x = np.arange(w, dtype=np.float32)
    phase, period = rng.uniform(0, 2 * np.pi), rng.uniform(0.6, 1.6) * w
    return y0 + amp * np.sin(2 * np.pi * x / period + phase) + amp * 0.5 * _smooth_noise(rng, (1, w), sigma=w / 12)[0]


def _tissue(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Echogenicity map (0..1) of normal breast tissue."""
    yy = np.arange(h, dtype=np.float32)[:, None]
    skin = _wavy_line(rng, w, rng.uniform(0.03, 0.06) * h, 0.01 * h)
    fat_end = _wavy_line(rng, w, rng.uniform(0.18, 0.32) * h, 0.04 * h)
    gland_end = _wavy_line(rng, w, rng.uniform(0.60, 0.78) * h, 0.05 * h)
    e = np.full((h, w), 0.35, np.float32)
    gland = (yy >= fat_end) & (yy < gland_end)
    texture = _smooth_noise(rng, (h, w), sigma=rng.uniform(3, 7))
    e[gland] = 0.62 + 0.14 * texture[gland]
    muscle = yy >= gland_end
    stripes = 0.5 + 0.5 * np.sin(yy * rng.uniform(0.25, 0.45) + 2 * _smooth_noise(rng, (h, w), 12))
    e[muscle] = (0.32 + 0.18 * stripes)[muscle]
    e[yy < skin] = 0.15
    skin_band = np.abs(yy - skin) < max(1.5, 0.012 * h)
    e[skin_band] = 0.95
    # Dark fat lobules (present in every class: lesion look-alikes without a mask).
    for _ in range(rng.integers(2, 6)):
        cx, cy = rng.uniform(0, w), rng.uniform(0.1, 0.35) * h
        ax, ay = rng.uniform(0.05, 0.12) * w, rng.uniform(0.025, 0.05) * h
        cv2.ellipse(
            e,
            (int(cx), int(cy)),
            (int(ax), int(ay)),
            rng.uniform(-15, 15),
            0,
            360,
            float(rng.uniform(0.22, 0.32)),
            -1,
        )
    # Cooper's ligaments: thin bright curves through the gland.
    for _ in range(rng.integers(2, 5)):
        line = _wavy_line(rng, w, rng.uniform(0.25, 0.7) * h, 0.06 * h)
        pts = np.stack([np.arange(w), line], 1).astype(np.int32)
        cv2.polylines(e, [pts], False, float(rng.uniform(0.8, 0.95)), thickness=1)
    return np.clip(e, 0, 1)


def _lesion_mask(
    rng: np.random.Generator, h: int, w: int, label: str, avoid: np.ndarray | None
) -> tuple[np.ndarray, dict[str, float | bool]]:
    """Draw a lesion outline; return its exact mask and shape descriptors."""
    r = rng.uniform(0.07, 0.16) * h
    if label == "benign":
        wider = rng.random() < 0.85
        aspect = rng.uniform(1.25, 1.9) if wider else rng.uniform(0.85, 1.05)  # width/height
        harmonics = rng.random() < 0.25  # some benign lesions are gently lobulated
        amp = rng.uniform(0.04, 0.1) if harmonics else 0.0
        spikes = 0
    else:
        taller = rng.random() < 0.7
        aspect = rng.uniform(0.6, 0.95) if taller else rng.uniform(1.05, 1.4)
        amp = rng.uniform(0.1, 0.22)
        spikes = int(rng.integers(8, 18)) if rng.random() < 0.6 else 0
    a, b = r * np.sqrt(aspect), r / np.sqrt(aspect)  # semi-axes along x and y
    theta = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    radius = np.ones_like(theta)
    for k in range(2 if label == "benign" else 3, 9):
        radius += amp / (k - 1) * np.sin(k * theta + rng.uniform(0, 2 * np.pi)) * rng.uniform(0.5, 1.5)
    for _ in range(spikes):
        centre, width = rng.uniform(0, 2 * np.pi), rng.uniform(0.04, 0.09)
        d = np.angle(np.exp(1j * (theta - centre)))
        radius += rng.uniform(0.25, 0.6) * np.exp(-0.5 * (d / width) ** 2)
    for _ in range(20):
        cx = rng.uniform(a * 1.2, w - a * 1.2)
        cy = rng.uniform(max(b * 1.3, 0.28 * h), min(0.72 * h, h - b * 1.8))
        rot = np.deg2rad(rng.uniform(-12, 12))
        xs = a * radius * np.cos(theta)
        ys = b * radius * np.sin(theta)
        px = cx + xs * np.cos(rot) - ys * np.sin(rot)
        py = cy + xs * np.sin(rot) + ys * np.cos(rot)
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(
            mask,
            [np.round(np.stack([px, py], 1) * 16).astype(np.int32)],
            1,
            lineType=cv2.LINE_8,
            shift=4,
        )
        if avoid is None or not (cv2.dilate(mask, np.ones((9, 9), np.uint8)) & avoid).any():
            break
    ys_, xs_ = np.nonzero(mask)
    desc = {
        "width_px": float(xs_.max() - xs_.min() + 1),
        "height_px": float(ys_.max() - ys_.min() + 1),
        "spiculated": bool(spikes),
    }
    return mask.astype(bool), desc


def _add_lesion(rng: np.random.Generator, e: np.ndarray, mask: np.ndarray, label: str) -> np.ndarray:
    """Paint a hypoechoic lesion and its posterior acoustic features into ``e``."""
    h, w = e.shape
    m = mask.astype(np.float32)
    margin_sigma = rng.uniform(0.6, 1.2) if label == "benign" else rng.uniform(1.5, 3.0)
    soft = cv2.GaussianBlur(m, (0, 0), margin_sigma)
    inner = rng.uniform(0.04, 0.18) if label == "benign" else rng.uniform(0.1, 0.26)
    hetero = 0.03 if label == "benign" else 0.08
    inside = np.clip(inner + hetero * _smooth_noise(rng, (h, w), 2.0), 0.02, 0.5)
    out = e * (1 - soft) + inside * soft
    ys, xs = np.nonzero(mask)
    x0, x1, y1 = xs.min(), xs.max(), ys.max()
    cols = np.zeros((h, w), np.float32)
    cols[y1:, x0 : x1 + 1] = 1.0
    cols = cv2.GaussianBlur(cols, (0, 0), max(2.0, 0.08 * (x1 - x0)))
    depth = np.clip((np.arange(h, dtype=np.float32)[:, None] - y1) / (0.5 * h), 0, 1)
    fade = cols * (1 - depth) * (1 - soft)
    if label == "benign":
        if rng.random() < 0.5:  # thin echogenic capsule
            ring = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) - mask.astype(np.uint8)
            out = np.maximum(out, ring * rng.uniform(0.7, 0.9))
        if rng.random() < 0.6:
            out = out * (1 + rng.uniform(0.2, 0.5) * fade)  # posterior enhancement
        elif rng.random() < 0.25:
            out = out * (1 - rng.uniform(0.2, 0.4) * fade)  # some benign lesions shadow
    else:
        if rng.random() < 0.65:
            out = out * (1 - rng.uniform(0.35, 0.65) * fade)  # posterior shadowing
        if rng.random() < 0.3:  # thick echogenic halo
            halo = cv2.dilate(mask.astype(np.uint8), np.ones((7, 7), np.uint8)) - mask.astype(np.uint8)
            out = np.maximum(out, cv2.GaussianBlur(halo.astype(np.float32), (0, 0), 1.5) * 0.75)
    return np.clip(out, 0, 1.2)


def _acquire(rng: np.random.Generator, e: np.ndarray) -> np.ndarray:
    """Turn an echogenicity map into an 8-bit B-mode image (speckle, attenuation, gain)."""
    h, w = e.shape
    speckle = rng.rayleigh(1.0, size=(h, w)).astype(np.float32)
    speckle = cv2.GaussianBlur(speckle, (0, 0), sigmaX=rng.uniform(1.0, 1.8), sigmaY=0.6)
    speckle /= speckle.mean()
    depth = np.arange(h, dtype=np.float32)[:, None] / h
    atten = np.exp(-rng.uniform(0.3, 1.1) * depth)
    lateral = 1 - 0.15 * ((np.arange(w, dtype=np.float32)[None, :] / w - 0.5) * 2) ** 2
    signal = e * speckle * atten * lateral * rng.uniform(0.8, 1.15)
    img = np.log1p(8 * np.clip(signal, 0, None)) / np.log1p(8 * 1.4)
    img = img ** rng.uniform(0.9, 1.3) + rng.normal(0, 0.015, size=(h, w))
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def _draw_calipers(rng: np.random.Generator, img: np.ndarray, mask: np.ndarray | None) -> None:
    h, w = img.shape
    if mask is not None and mask.any():
        ys, xs = np.nonzero(mask)
        pts = [(int(xs.min()), int(ys.mean())), (int(xs.max()), int(ys.mean()))]
    else:
        y = int(rng.uniform(0.3, 0.6) * h)
        pts = [(int(0.3 * w), y), (int(0.6 * w), y)]
    for p in pts:
        cv2.drawMarker(img, p, 255, cv2.MARKER_CROSS, markerSize=max(5, h // 30), thickness=1)
    cv2.putText(img, "RT BREAST", (4, h - 6), cv2.FONT_HERSHEY_SIMPLEX, max(0.3, h / 700), 230, 1)


def render_case(
    rng: np.random.Generator, label: str, height: int, width: int, two_lesions: bool = False
) -> tuple[np.ndarray, list[np.ndarray], dict[str, object]]:
    """Render one image of class ``label``.

    Args:
        rng: Random generator (seeded by the caller).
        label: One of :data:`core.classes.CLASS_NAMES`.
        height: Image height in pixels.
        width: Image width in pixels.
        two_lesions: Draw a second lesion of the same class (lesion classes only).

    Returns:
        ``(image, masks, meta)``: the ``uint8`` image ``(H, W)``, one bool mask per
        lesion (empty list for normal), and shape descriptors of each lesion.

    Raises:
        ValueError: If ``label`` is not a class name.
    """
    if label not in CLASS_NAMES:
        raise ValueError(f"`label` must be one of {list(CLASS_NAMES)}. Received: label={label!r}")
    e = _tissue(rng, height, width)
    masks: list[np.ndarray] = []
    lesions = []
    if label != "normal":
        for _ in range(2 if two_lesions else 1):
            avoid = np.any(masks, axis=0).astype(np.uint8) if masks else None
            m, desc = _lesion_mask(rng, height, width, label, avoid)
            e = _add_lesion(rng, e, m, label)
            masks.append(m)
            lesions.append(desc)
    img = _acquire(rng, e)
    return img, masks, {"label": label, "lesions": lesions}


def _write_png(path: Path, arr: np.ndarray) -> None:
    if not cv2.imwrite(str(path), arr):
        raise OSError(f"could not write {path}")


def generate_synthetic(
    out_dir: str | Path,
    config: SynthConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a synthetic dataset in the BUSI layout to ``out_dir``.

    The folder is built under a temporary name and renamed when complete, so an
    interrupted run never leaves a partial dataset at ``out_dir``.

    Args:
        out_dir: Destination folder; must not exist yet (or be empty).
        config: Dataset parameters.
        progress: Called as ``progress(done, total)`` after each image.

    Returns:
        ``out_dir``.

    Raises:
        FileExistsError: If ``out_dir`` exists and is not empty.

    Example:
        >>> generate_synthetic("/tmp/synth", SynthConfig(per_class=10, size=128))
    """
    cfg = config or SynthConfig()
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise OutputExistsError(f"`--out` must be a new or empty folder. Received: {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        total = cfg.per_class * len(CLASS_NAMES)
        for ci, label in enumerate(CLASS_NAMES):
            _write_class(
                tmp / label, ci, label, cfg, lambda n, ci=ci: progress and progress(ci * cfg.per_class + n, total)
            )
        meta = {"generator_version": GENERATOR_VERSION, **asdict(cfg)}
        (tmp / "synthetic.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            out.rmdir()
        try:
            os.replace(tmp, out)
        except OSError as e:  # another process renamed its copy into place first
            raise OutputExistsError(f"`--out` must be a new or empty folder. Received: {out}") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_class(folder: Path, ci: int, label: str, cfg: SynthConfig, progress: Callable[[int], object]) -> None:
    """Write one class's images and masks to ``folder``; ``progress(n)`` after the n-th image."""
    folder.mkdir()
    prev: tuple[np.ndarray, list[np.ndarray]] | None = None
    for n in range(1, cfg.per_class + 1):
        rng = np.random.default_rng([cfg.seed, ci, n])
        if prev is not None and rng.random() < cfg.reacquired_rate:
            img, masks = prev[0].copy(), prev[1]
            img = np.clip(img.astype(np.int16) + int(rng.integers(-6, 7)), 0, 255).astype(np.uint8)
            _draw_calipers(rng, img, np.any(masks, axis=0) if masks else None)
        else:
            width = int(round(cfg.size * rng.uniform(1.0, 1.3)))
            two = label != "normal" and rng.random() < cfg.two_lesion_rate
            img, masks, _ = render_case(rng, label, cfg.size, width, two_lesions=two)
            if rng.random() < 0.15:
                _draw_calipers(rng, img, np.any(masks, axis=0) if masks else None)
        prev = (img, masks)
        stem = f"{label} ({n})"
        _write_png(folder / f"{stem}.png", img)
        if not masks:
            _write_png(folder / f"{stem}_mask.png", np.zeros(img.shape, np.uint8))
        for k, m in enumerate(masks):
            suffix = "_mask" if k == 0 else f"_mask_{k}"
            _write_png(folder / f"{stem}{suffix}.png", m.astype(np.uint8) * 255)
        progress(n)


def cache_root() -> Path:
    """Folder for generated data: ``$BUSI_CACHE_DIR``, else ``$XDG_CACHE_HOME/busi-pipeline``,
    else ``~/.cache/busi-pipeline``."""
    env = os.environ.get("BUSI_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "busi-pipeline"


def default_data_dir(config: SynthConfig | None = None) -> Path:
    """Path of the built-in synthetic dataset for ``config`` (not generated here)."""
    cfg = config or SynthConfig()
    name = f"synthetic-v{GENERATOR_VERSION}-n{cfg.per_class}-s{cfg.size}-seed{cfg.seed}"
    return cache_root() / name


def ensure_synthetic(
    config: SynthConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Return the built-in synthetic dataset, generating it on first use.

    Returns:
        The dataset folder (BUSI layout).
    """
    path = default_data_dir(config)
    if (path / "synthetic.json").is_file():
        return path
    try:
        return generate_synthetic(path, config, progress)
    except FileExistsError:
        if (path / "synthetic.json").is_file():  # another process finished it first
            return path
        raise


def resolve_data_dir(data_dir: str | Path | None, progress: Callable[[int, int], None] | None = None) -> Path:
    """Return ``data_dir``, or the built-in synthetic data (generated on first use, announced)."""
    if data_dir:
        return Path(data_dir)
    path = ensure_synthetic(progress=progress)
    print(f"Using the built-in synthetic data: {path}")
    return path
