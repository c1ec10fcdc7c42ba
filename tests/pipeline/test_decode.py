"""In-graph decoding follows the data layer's pixel rules."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from data.imageio import read_image
from pipeline.decode import decode_image_bytes, decode_image_file, preprocess, to_channels
from tests.conftest import disc_mask, save_mask, textured

G = textured(1)
RGB = np.dstack([G, 255 - G, G // 2])


def _write(path: Path, kind: str) -> Path:
    if kind == "L.png":
        Image.fromarray(G).save(path)
    elif kind == "RGB.png":
        Image.fromarray(RGB).save(path)
    elif kind == "RGBA.png":
        Image.fromarray(np.dstack([RGB, np.full_like(G, 9)])).save(path)
    elif kind == "LA.png":
        Image.fromarray(np.dstack([G, np.full_like(G, 9)]), mode="LA").save(path)
    elif kind == "P.png":
        Image.fromarray(RGB).convert("P").save(path)
    elif kind == "1.png":
        Image.fromarray(disc_mask()).save(path)
    elif kind == "I16.png":
        cv2.imwrite(str(path), G.astype(np.uint16) * 257 + 37)
    elif kind == "RGB16.png":
        cv2.imwrite(str(path), RGB.astype(np.uint16) * 250)
    elif kind in ("L.bmp", "RGB.bmp", "P.bmp", "1.bmp"):
        src = {"L": G, "RGB": RGB, "P": RGB, "1": disc_mask()}[kind.split(".")[0]]
        im = Image.fromarray(src)
        im = im.convert("P") if kind == "P.bmp" else im
        im.save(path)
    else:
        raise AssertionError(kind)
    return path


EXACT = [
    "L.png",
    "RGB.png",
    "RGBA.png",
    "LA.png",
    "P.png",
    "1.png",
    "I16.png",
    "RGB16.png",
    "L.bmp",
    "RGB.bmp",
    "P.bmp",
    "1.bmp",
]


@pytest.mark.parametrize("kind", EXACT)
def test_decode_matches_data_layer_exactly(tmp_path: Path, kind: str) -> None:
    p = tmp_path / kind
    _write(p, kind)
    got = decode_image_file(tf.constant(str(p))).numpy()
    np.testing.assert_array_equal(got, read_image(p))


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_jpeg_decodes_within_a_few_levels_of_pillow(tmp_path: Path, mode: str) -> None:
    p = tmp_path / "a.jpg"
    Image.fromarray(G if mode == "L" else RGB).save(p, quality=90)
    got = decode_image_file(tf.constant(str(p))).numpy().astype(int)
    ref = read_image(p).astype(int)
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= 6


def test_decode_bytes_drops_alpha() -> None:
    rgba = np.dstack([RGB, np.zeros_like(G)])
    png = tf.io.encode_png(rgba)
    np.testing.assert_array_equal(decode_image_bytes(png).numpy(), RGB)


def test_channel_conversion() -> None:
    gray = tf.constant(G[:, :, None])
    three = to_channels(gray, 3).numpy()
    assert three.shape == (*G.shape, 3) and (three[..., 0] == three[..., 2]).all()
    one = to_channels(tf.constant(RGB), 1).numpy()[..., 0]
    expected = RGB.astype(np.float32) @ np.array([0.2989, 0.5870, 0.1140], np.float32)
    np.testing.assert_allclose(one, expected, rtol=1e-6)


@pytest.mark.parametrize("method", ["bilinear", "area"])
def test_preprocess_shape_range_and_constant_image(method: str) -> None:
    flat = tf.fill([37, 53, 1], tf.constant(120, tf.uint8))
    out = preprocess(flat, 32, 3, method).numpy()
    assert out.shape == (32, 32, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, 120.0, atol=1e-3)


MASK_KINDS = ["0_255", "0_1", "1bit", "rgb", "rgba_transparent", "16bit", "jpeg"]


def _write_mask(path: Path, kind: str, disc: np.ndarray) -> None:
    if kind == "0_255":
        Image.fromarray(disc.astype(np.uint8) * 255).save(path)
    elif kind == "0_1":
        Image.fromarray(disc.astype(np.uint8)).save(path)
    elif kind == "1bit":
        Image.fromarray(disc).save(path)
    elif kind == "rgb":
        rgb = np.zeros((*disc.shape, 3), np.uint8)
        rgb[disc] = (255, 0, 0)
        Image.fromarray(rgb).save(path)
    elif kind == "rgba_transparent":
        rgba = np.full((*disc.shape, 4), 255, np.uint8)
        rgba[..., 3] = np.where(disc, 255, 0)
        Image.fromarray(rgba).save(path)
    elif kind == "16bit":
        cv2.imwrite(str(path), disc.astype(np.uint16) * 65535)
    elif kind == "jpeg":
        Image.fromarray(disc.astype(np.uint8) * 255).save(path, quality=80)


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_in_graph_mask_rule_matches_data_layer(tmp_path: Path, kind: str) -> None:
    from data.imageio import read_mask
    from pipeline.decode import binarize_mask_bytes

    disc = disc_mask(64, 80, 30, 40, 18)
    p = tmp_path / ("m.jpg" if kind == "jpeg" else "m.png")
    _write_mask(p, kind, disc)
    got = binarize_mask_bytes(tf.io.read_file(str(p))).numpy()[:, :, 0].astype(bool)
    ref = read_mask(p)
    if kind == "jpeg":  # two JPEG decoders may disagree on a few edge pixels
        assert (got != ref).mean() < 0.005
    else:
        np.testing.assert_array_equal(got, ref)


def test_merge_of_no_mask_files_is_empty() -> None:
    from pipeline.decode import merge_mask_files

    out = merge_mask_files(tf.constant([], tf.string), tf.constant(5), tf.constant(7)).numpy()
    assert out.shape == (5, 7, 1) and not out.any()


def test_merge_names_a_mask_whose_size_differs_from_its_image(tmp_path: Path) -> None:
    from pipeline.decode import merge_mask_files

    good = save_mask(tmp_path / "a_mask.png", disc_mask(48, 64, 24, 32, 10))
    bad = save_mask(tmp_path / "a_mask_1.png", disc_mask(40, 64, 20, 32, 10))
    merged = merge_mask_files(tf.constant([str(good)]), tf.constant(48), tf.constant(64)).numpy()
    np.testing.assert_array_equal(merged[:, :, 0].astype(bool), disc_mask(48, 64, 24, 32, 10))
    with pytest.raises(tf.errors.InvalidArgumentError, match="a_mask_1.png"):
        merge_mask_files(tf.constant([str(good), str(bad)]), tf.constant(48), tf.constant(64))
