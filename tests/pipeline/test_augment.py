"""Augmentation keeps image and mask aligned and masks binary, in every preset."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import pytest

from pipeline.augment import PRESETS, Augmenter, preset_transforms


def _square_case(channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    img = rng.integers(10, 40, size=(96, 96, channels), dtype=np.uint8)
    mask = np.zeros((96, 96, 1), np.uint8)
    img[30:60, 40:70] = 255
    mask[30:60, 40:70] = 1
    return img, mask


def _leaf_transforms(preset: str) -> list[A.BasicTransform]:
    out = []
    for t in preset_transforms(preset):
        out.extend(t.transforms if isinstance(t, A.OneOf) else [t])
    return out


def _assert_aligned(img: np.ndarray, mask: np.ndarray, where: str) -> None:
    assert set(np.unique(mask)) <= {0, 1}, f"{where}: mask not binary"
    m = mask[:, :, 0].astype(bool)
    bright = img.astype(np.float32).mean(axis=2) > 150
    near = cv2.dilate(m.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    outside = (bright & ~near).sum()
    assert outside <= 0.01 * bright.sum() + 2, f"{where}: {outside} bright pixels outside the mask"
    assert (m & bright).sum() >= 0.4 * m.sum() > 0, f"{where}: mask not over the bright square"


@pytest.mark.parametrize("preset", [p for p in PRESETS if p != "none"])
def test_every_transform_of_every_preset_keeps_mask_aligned(preset: str) -> None:
    img, mask = _square_case()
    for t in _leaf_transforms(preset):
        t.p = 1.0
        compose = A.Compose([t])
        for seed in range(4):
            compose.set_random_seed(seed)
            out = compose(image=img, mask=mask[:, :, 0])
            _assert_aligned(out["image"], out["mask"][:, :, None], f"{preset}/{type(t).__name__}/{seed}")


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("channels", [1, 3])
def test_whole_preset_keeps_mask_aligned_and_shapes(preset: str, channels: int) -> None:
    img, mask = _square_case(channels)
    aug = Augmenter(preset)
    for seed in range(10):
        out_img, out_mask = aug(img, mask, seed)
        assert out_img.shape == img.shape and out_img.dtype == np.uint8
        assert out_mask.shape == mask.shape
        _assert_aligned(out_img, out_mask, f"{preset}/{seed}")


def test_same_seed_same_result_and_seeds_differ() -> None:
    img, mask = _square_case()
    a, b = Augmenter("strong"), Augmenter("strong")
    outs = [a(img, mask, s)[0] for s in range(6)]
    assert all(np.array_equal(o, b(img, mask, s)[0]) for s, o in enumerate(outs))
    assert len({o.tobytes() for o in outs}) > 1


def test_none_preset_is_identity() -> None:
    img, mask = _square_case()
    out_img, out_mask = Augmenter("none")(img, mask, 3)
    np.testing.assert_array_equal(out_img, img)
    np.testing.assert_array_equal(out_mask, mask)


def test_unknown_preset_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"one of \['none', 'light', 'strong'"):
        Augmenter("heavy")


def test_depth_gain_scales_rows_and_follows_the_seed() -> None:
    from pipeline.augment import DepthGain

    img = np.full((11, 4, 1), 100, np.uint8)
    compose = A.Compose([DepthGain(slope_range=(0.5, 0.5), p=1.0)])
    out = compose(image=img)["image"][:, 0, 0].astype(float)
    expected = 100 * np.exp(0.5 * (np.linspace(0, 1, 11) - 0.5))
    np.testing.assert_allclose(out, np.floor(expected), atol=1)  # darker at the top, the middle row unchanged
    assert out[5] == 100 and out[0] < out[5] < out[-1]
    varied = A.Compose([DepthGain(p=1.0)])
    runs = []
    for seed in (3, 3, 5):
        varied.set_random_seed(seed)
        runs.append(varied(image=img)["image"])
    assert np.array_equal(runs[0], runs[1]) and not np.array_equal(runs[0], runs[2])
