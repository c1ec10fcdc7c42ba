"""Every image and mask mode is read by its documented rule."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from data.imageio import (
    ImageReadError,
    canonical_pixels,
    pixel_hash,
    read_image,
    read_image_with_header,
    read_mask,
)
from tests.conftest import disc_mask, textured


@pytest.fixture
def gray() -> np.ndarray:
    return textured(1)


def test_reads_8bit_gray_unchanged(tmp_path: Path, gray: np.ndarray) -> None:
    Image.fromarray(gray).save(tmp_path / "a.png")
    img, header = read_image_with_header(tmp_path / "a.png")
    assert img.dtype == np.uint8 and img.shape == (*gray.shape, 1)
    np.testing.assert_array_equal(img[:, :, 0], gray)
    assert (header.mode, header.channels, header.bit_depth) == ("L", 1, 8)


def test_reads_rgb_unchanged(tmp_path: Path, gray: np.ndarray) -> None:
    rgb = np.stack([gray, 255 - gray, gray // 2], axis=-1)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), rgb)


def test_drops_alpha_of_rgba(tmp_path: Path, gray: np.ndarray) -> None:
    rgb = np.stack([gray, gray, 255 - gray], axis=-1)
    alpha = np.full(gray.shape, 0, np.uint8)  # fully transparent: colour still kept
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "a.png")
    img, header = read_image_with_header(tmp_path / "a.png")
    np.testing.assert_array_equal(img, rgb)
    assert header.channels == 4


def test_drops_alpha_of_gray_alpha(tmp_path: Path, gray: np.ndarray) -> None:
    Image.fromarray(np.dstack([gray, np.full_like(gray, 7)]), mode="LA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png")[:, :, 0], gray)


def test_expands_palette_to_rgb(tmp_path: Path) -> None:
    idx = np.array([[0, 1], [2, 1]], np.uint8)
    im = Image.fromarray(idx, mode="P")
    im.putpalette([10, 20, 30, 200, 100, 50, 0, 255, 0] + [0] * (256 * 3 - 9))
    im.save(tmp_path / "p.png")
    img = read_image(tmp_path / "p.png")
    assert img.shape == (2, 2, 3)
    np.testing.assert_array_equal(img[0, 0], [10, 20, 30])
    np.testing.assert_array_equal(img[0, 1], [200, 100, 50])
    np.testing.assert_array_equal(img[1, 0], [0, 255, 0])


def test_16bit_gray_keeps_high_byte(tmp_path: Path) -> None:
    a16 = np.array([[0, 255, 256, 0x1234], [0x8000, 0xFFFF, 0x00FF, 0x0100]], np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), a16)
    img, header = read_image_with_header(tmp_path / "g16.png")
    np.testing.assert_array_equal(img[:, :, 0], (a16 >> 8).astype(np.uint8))
    assert header.bit_depth == 16 and img.shape[2] == 1


def test_16bit_rgb_keeps_high_byte(tmp_path: Path) -> None:
    a = np.array([[0x1234, 0xFF00, 0x0101]], np.uint16)
    rgb16 = np.stack([a, a // 2, a // 3], axis=-1)
    cv2.imwrite(str(tmp_path / "c16.png"), rgb16[:, :, ::-1])  # OpenCV writes BGR
    img, header = read_image_with_header(tmp_path / "c16.png")
    np.testing.assert_array_equal(img, (rgb16 >> 8).astype(np.uint8))
    assert header.bit_depth == 16


def test_1bit_reads_as_0_255(tmp_path: Path) -> None:
    bits = disc_mask()
    Image.fromarray(bits).save(tmp_path / "b.png")
    img = read_image(tmp_path / "b.png")
    assert set(np.unique(img)) == {0, 255}
    np.testing.assert_array_equal(img[:, :, 0] == 255, bits)


@pytest.mark.parametrize("mode,channels", [("L", 1), ("RGB", 3), ("CMYK", 3)])
def test_reads_jpeg(tmp_path: Path, gray: np.ndarray, mode: str, channels: int) -> None:
    Image.fromarray(gray).convert(mode).save(tmp_path / "a.jpg", quality=95)
    img = read_image(tmp_path / "a.jpg")
    assert img.shape == (*gray.shape, channels)
    assert np.abs(img.astype(float).mean(axis=2) - gray).mean() < 4  # lossy, but the same picture


@pytest.mark.parametrize("mode,channels", [("L", 1), ("RGB", 3), ("P", 1)])
def test_reads_bmp(tmp_path: Path, gray: np.ndarray, mode: str, channels: int) -> None:
    # A gray-palette BMP is read by Pillow as gray, hence one channel for "P".
    Image.fromarray(gray).convert(mode).save(tmp_path / "a.bmp")
    img = read_image(tmp_path / "a.bmp")
    assert img.shape == (*gray.shape, channels)
    for c in range(channels):
        np.testing.assert_array_equal(img[:, :, c], gray)


def test_reads_1bit_bmp(tmp_path: Path) -> None:
    bits = disc_mask()
    Image.fromarray(bits).save(tmp_path / "a.bmp")
    np.testing.assert_array_equal(read_image(tmp_path / "a.bmp")[:, :, 0], bits * 255)


def test_truncated_png_raises_read_error(tmp_path: Path, gray: np.ndarray) -> None:
    Image.fromarray(gray).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "a.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="a.png"):
        read_image(tmp_path / "a.png")


def test_not_an_image_raises_read_error(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_text("hello")
    with pytest.raises(ImageReadError, match="a.png"):
        read_image(tmp_path / "a.png")


def test_gray_and_equal_channel_rgb_have_same_pixel_hash(gray: np.ndarray) -> None:
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    assert pixel_hash(gray[:, :, None]) == pixel_hash(rgb)
    assert canonical_pixels(rgb).shape == gray.shape
    changed = gray.copy()
    changed[0, 0] ^= 1
    assert pixel_hash(changed[:, :, None]) != pixel_hash(gray[:, :, None])


# --- masks -----------------------------------------------------------------------------


@pytest.fixture
def disc() -> np.ndarray:
    return disc_mask()


def test_mask_0_255_gray(tmp_path: Path, disc: np.ndarray) -> None:
    Image.fromarray(disc.astype(np.uint8) * 255).save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), disc)


def test_mask_0_1_gray(tmp_path: Path, disc: np.ndarray) -> None:
    Image.fromarray(disc.astype(np.uint8)).save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), disc)


def test_mask_1bit(tmp_path: Path, disc: np.ndarray) -> None:
    Image.fromarray(disc).save(tmp_path / "m.png")
    assert Image.open(tmp_path / "m.png").mode == "1"
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), disc)


def test_mask_rgb_coloured_lesion(tmp_path: Path, disc: np.ndarray) -> None:
    rgb = np.zeros((*disc.shape, 3), np.uint8)
    rgb[disc] = (255, 0, 0)
    Image.fromarray(rgb).save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), disc)


def test_mask_rgba_transparent_background_is_background(tmp_path: Path, disc: np.ndarray) -> None:
    rgba = np.full((*disc.shape, 4), 255, np.uint8)  # white everywhere ...
    rgba[..., 3] = np.where(disc, 255, 0)  # ... but only the lesion is opaque
    Image.fromarray(rgba).save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), disc)


def test_mask_16bit(tmp_path: Path, disc: np.ndarray) -> None:
    cv2.imwrite(str(tmp_path / "m.png"), disc.astype(np.uint16) * 65535)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), disc)


def test_mask_jpeg_is_cut_at_mid_range(tmp_path: Path) -> None:
    big = disc_mask(96, 96, 48, 48, 30)
    Image.fromarray(big.astype(np.uint8) * 255).save(tmp_path / "m.jpg", quality=75)
    got = read_mask(tmp_path / "m.jpg")
    assert (got != big).mean() < 0.01  # only a few edge pixels may move


def test_empty_mask_is_all_background(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "m.png")
    assert not read_mask(tmp_path / "m.png").any()
