"""Lesion crops: the box from a mask, the context patch and the model's crop, and the pipeline that serves them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from core.errors import OptionError
from data.discover import discover
from pipeline.config import MAX_JITTER, PipelineConfig
from pipeline.crop import MIN_SIDE, context_patch, context_size, crop_patch, jitter_crop, lesion_box
from pipeline.dataset import build_dataset
from tests.conftest import save_gray, save_mask


def _mask(h: int, w: int, rows: slice, cols: slice) -> np.ndarray:
    m = np.zeros((h, w, 1), np.uint8)
    m[rows, cols] = 1
    return m


def test_the_box_is_the_lesions_bounding_square_with_its_margin() -> None:
    # rows 20..39 and columns 50..89: 20 x 40, centred at (30, 70); the square's side is 40 * 1.2
    box = lesion_box(tf.constant(_mask(100, 200, slice(20, 40), slice(50, 90))), 0.1).numpy()
    np.testing.assert_allclose(box, [6, 46, 54, 94])
    assert lesion_box(tf.constant(_mask(100, 200, slice(20, 40), slice(50, 90))), 0.0).numpy()[2] == 50
    # an empty mask: the square around the whole frame; a lesion of one pixel: the smallest side
    np.testing.assert_allclose(lesion_box(tf.zeros((100, 200, 1)), 0.1).numpy(), [-50, 0, 150, 200])
    tiny = lesion_box(tf.constant(_mask(100, 200, slice(10, 11), slice(10, 11))), 0.1).numpy()
    np.testing.assert_allclose(tiny[2:] - tiny[:2], [MIN_SIDE, MIN_SIDE])


def _lesion_image(h: int, w: int, rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray]:
    image = np.full((h, w, 3), 40.0, np.float32)
    image[rows, cols] = 200.0
    return image, _mask(h, w, rows, cols)


@pytest.mark.parametrize("margin", [0.0, 0.25])
def test_the_crop_holds_the_lesion_in_its_centre_with_the_margin_around_it(margin: float) -> None:
    image, mask = _lesion_image(120, 160, slice(30, 70), slice(60, 100))  # a 40 x 40 lesion
    size = 32
    patch = context_patch(tf.constant(image), lesion_box(tf.constant(mask), margin), size)
    assert patch.shape == (context_size(size), context_size(size), 3)
    crop = crop_patch(patch, size).numpy()
    bright = crop[..., 0] > 120
    # the lesion fills 1 / (1 + 2 margin) of the crop's side, centred
    assert bright.mean() == pytest.approx(1 / (1 + 2 * margin) ** 2, abs=0.05)
    ys, xs = np.nonzero(bright)
    assert ys.mean() == pytest.approx((size - 1) / 2, abs=0.6) and xs.mean() == pytest.approx((size - 1) / 2, abs=0.6)
    if margin:
        assert crop[0, 0, 0] == pytest.approx(40.0, abs=1)  # the tissue around it, not padding


def test_a_lesion_at_the_frames_edge_is_padded_with_zeros() -> None:
    image, mask = _lesion_image(120, 160, slice(0, 40), slice(0, 40))
    crop = crop_patch(context_patch(tf.constant(image), lesion_box(tf.constant(mask), 0.25), 32), 32).numpy()
    assert crop[0, 0, 0] == 0.0 and crop[-1, -1, 0] == pytest.approx(40.0, abs=1)
    assert crop[16, 16, 0] == pytest.approx(200.0, abs=1)


def test_jitter_is_seeded_and_none_is_the_centre() -> None:
    image, mask = _lesion_image(120, 160, slice(30, 70), slice(60, 100))
    image += np.random.default_rng(0).normal(0, 10, image.shape).astype(np.float32)
    patch = context_patch(tf.constant(image), lesion_box(tf.constant(mask), 0.1), 32)
    a = jitter_crop(patch, 32, 0.1, tf.constant([1, 2])).numpy()
    np.testing.assert_array_equal(a, jitter_crop(patch, 32, 0.1, tf.constant([1, 2])).numpy())
    assert not np.allclose(a, jitter_crop(patch, 32, 0.1, tf.constant([3, 4])).numpy())
    np.testing.assert_allclose(jitter_crop(patch, 32, 0.0, tf.constant([3, 4])), crop_patch(patch, 32), atol=1e-3)
    # the largest jitter stays inside the patch: no zeros come in from outside it
    for seed in range(20):
        assert jitter_crop(patch, 32, MAX_JITTER, tf.constant([seed, 0])).numpy().min() > 0


def test_crop_options_are_checked() -> None:
    with pytest.raises(OptionError, match="crop"):
        PipelineConfig(crop="box")
    with pytest.raises(OptionError, match="crop_margin"):
        PipelineConfig(crop="lesion", crop_margin=-0.1)
    with pytest.raises(OptionError, match="crop_jitter"):
        PipelineConfig(crop="lesion", crop_jitter=MAX_JITTER + 0.01)


def _write_case(root: Path, label: str, n: int, rows: slice, cols: slice) -> None:
    image, mask = _lesion_image(96, 128, rows, cols)
    save_gray(root / label / f"{label} ({n}).png", image[..., 0].astype(np.uint8))
    save_mask(root / label / f"{label} ({n})_mask.png", mask[..., 0].astype(bool))


def test_the_pipeline_serves_lesion_crops_centred_for_evaluation_and_jittered_for_training(tmp_path) -> None:
    # lesions of different sizes and places: every evaluation crop shows its lesion centred at the same scale
    places = [(slice(10, 30), slice(10, 50)), (slice(40, 90), slice(60, 110)), (slice(0, 24), slice(100, 128))]
    for n, (rows, cols) in enumerate(places, 1):
        _write_case(tmp_path, "benign", n, rows, cols)
        _write_case(tmp_path, "malignant", n, rows, cols)
    records = sorted(discover(tmp_path).values(), key=lambda c: c.case_id)
    config = PipelineConfig(img_size=32, batch_size=6, crop="lesion", crop_margin=0.25, augment="none")
    (x, y), *_ = list(build_dataset(records, "cls", config, training=False))
    assert x.shape == (6, 32, 32, 3) and y.shape == (6, 3)
    for crop in x.numpy():
        bright = crop[..., 0] > 120
        # the longer side of the lesion spans the central 1/1.5 of the crop
        assert max(bright.any(0).sum(), bright.any(1).sum()) == pytest.approx(32 / 1.5, abs=1.5)
    training = build_dataset(records, "cls", config, training=True)
    one, two = (np.concatenate([b.numpy() for b, _ in training]) for _ in range(2))
    assert one.shape == (6, 32, 32, 3)
    assert not np.allclose(np.sort(one.ravel()), np.sort(two.ravel()))  # each epoch draws new jitter
