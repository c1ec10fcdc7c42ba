"""The built-in synthetic data: masks match lesions, layout, determinism, caching."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

import data.synthetic as synthetic
from data.discover import discover
from data.report import InspectOptions, analyze_dataset
from data.synthetic import SynthConfig, ensure_synthetic, generate_synthetic, render_case


@pytest.mark.parametrize("label", ["benign", "malignant"])
def test_masks_match_the_drawn_lesions(label: str) -> None:
    for seed in range(8):
        img, masks, meta = render_case(np.random.default_rng(seed), label, 128, 160)
        assert len(masks) == 1 and masks[0].dtype == bool
        m = masks[0].astype(np.uint8)
        ring = cv2.dilate(m, np.ones((9, 9), np.uint8)) - cv2.dilate(m, np.ones((3, 3), np.uint8))
        inside = img[masks[0]].mean()
        around = img[ring.astype(bool)].mean()
        assert inside < 0.7 * around, (seed, inside, around)  # hypoechoic where the mask is
        n, _ = cv2.connectedComponents(m)
        assert n - 1 == 1
        assert 0.003 < masks[0].mean() < 0.25
        ys, xs = np.nonzero(masks[0])
        assert meta["lesions"][0]["width_px"] == xs.max() - xs.min() + 1


def test_normal_images_have_no_lesion() -> None:
    img, masks, meta = render_case(np.random.default_rng(0), "normal", 96, 120)
    assert masks == [] and meta["lesions"] == [] and img.shape == (96, 120)


def test_benign_wider_and_malignant_taller_as_a_rule() -> None:
    def wider_share(label: str) -> float:
        wide = 0
        for seed in range(40):
            _, _, meta = render_case(np.random.default_rng(seed), label, 128, 160)
            d = meta["lesions"][0]
            wide += d["width_px"] > d["height_px"]
        return wide / 40

    assert wider_share("benign") > 0.75
    assert wider_share("malignant") < 0.5


def test_two_lesions_do_not_touch() -> None:
    _, masks, _ = render_case(np.random.default_rng(3), "benign", 160, 200, two_lesions=True)
    assert len(masks) == 2 and not (masks[0] & masks[1]).any()


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.png")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def test_generates_busi_layout_deterministically(tmp_path: Path) -> None:
    cfg = SynthConfig(per_class=12, size=96, seed=5, two_lesion_rate=0.3, reacquired_rate=0.3)
    a = generate_synthetic(tmp_path / "a", cfg)
    b = generate_synthetic(tmp_path / "b", cfg)
    c = generate_synthetic(tmp_path / "c", SynthConfig(per_class=12, size=96, seed=6))
    assert _digest(a) == _digest(b) != _digest(c)
    cases = discover(a)
    assert len(cases) == 36
    assert any(len(c.masks) == 2 for c in cases.values())  # second lesions in _mask_1
    analysis = analyze_dataset(a, InspectOptions(folds=3))
    assert not analysis.scan.warnings
    assert analysis.pairs  # re-acquired cases are found as near-duplicates
    assert all(not p.cross_class for p in analysis.pairs)
    stats = analysis.scan.stats
    assert (stats.loc[stats.label == "normal", "mask_area_fraction"] == 0).all()
    assert (stats.loc[stats.label != "normal", "mask_area_fraction"] > 0).all()


def test_interrupted_generation_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    calls = {"n": 0}
    real = synthetic._write_png

    def failing(path, arr):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        real(path, arr)

    monkeypatch.setattr(synthetic, "_write_png", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic(tmp_path / "out", SynthConfig(per_class=3, size=64))
    assert list(tmp_path.iterdir()) == []


def test_refuses_non_empty_out(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("keep me")
    with pytest.raises(FileExistsError, match="new or empty folder"):
        generate_synthetic(tmp_path / "out", SynthConfig(per_class=1, size=64))


def test_ensure_generates_once_into_the_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("BUSI_CACHE_DIR", str(tmp_path / "cache"))
    cfg = SynthConfig(per_class=2, size=64)
    path = ensure_synthetic(cfg)
    assert path.parent == tmp_path / "cache" and (path / "synthetic.json").is_file()
    stamp = (path / "benign" / "benign (1).png").stat().st_mtime_ns
    assert ensure_synthetic(cfg) == path
    assert (path / "benign" / "benign (1).png").stat().st_mtime_ns == stamp


def test_bad_config_raises() -> None:
    with pytest.raises(ValueError, match="per_class"):
        SynthConfig(per_class=0)
    with pytest.raises(ValueError, match="size"):
        SynthConfig(size=10)
