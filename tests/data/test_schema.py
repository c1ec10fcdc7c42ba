"""Schema inference and the check of another dataset against it."""

from __future__ import annotations

import numpy as np
from PIL import Image

from data.discover import discover
from data.scan import scan
from data.schema import check_schema, infer_schema
from tests.conftest import disc_mask


def _schema_of(root):
    r = scan(discover(root))
    return infer_schema(r.stats, r.has_masks)


def test_dataset_conforms_to_its_own_schema(make_busi) -> None:
    root = make_busi(per_class=4)
    r = scan(discover(root))
    schema = infer_schema(r.stats, r.has_masks)
    assert schema["labels"]["values"] == ["normal", "benign", "malignant"]
    assert schema["numeric"]["width"] == {"min": 64, "max": 64}
    assert schema["categorical"]["mode"] == ["L"]
    assert check_schema(r.stats, schema, r.has_masks) == []


def test_shifted_site_is_flagged(make_busi, tmp_path) -> None:
    schema = _schema_of(make_busi(per_class=4, name="train"))
    # A new site: larger RGB images, no normal class, no masks at all.
    site = tmp_path / "site"
    rng = np.random.default_rng(0)
    for label in ("benign", "malignant"):
        for n in range(3):
            img = rng.integers(0, 255, size=(96, 128, 3), dtype=np.uint8)
            (site / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(site / label / f"{label}{n}.png")
    r = scan(discover(site))
    anomalies = check_schema(r.stats, schema, r.has_masks)
    found = {(a.field, a.kind) for a in anomalies}
    assert ("width", "out_of_range") in found
    assert ("height", "out_of_range") in found
    assert ("mode", "new_value") in found
    assert ("channels", "new_value") in found
    assert ("label", "missing_value") in found
    assert ("label", "label_drift") in found
    assert ("masks", "masks_missing") in found
    width = next(a for a in anomalies if a.field == "width")
    assert len(width.case_ids) == 6 and "[64, 64]" in width.message


def test_label_set_change_alone_is_flagged(make_busi, tmp_path) -> None:
    schema = _schema_of(make_busi(per_class=4, name="train"))
    other = make_busi(per_class=4, name="other", seed=3)
    for p in (other / "normal").iterdir():
        p.unlink()
    (other / "normal").rmdir()
    r = scan(discover(other))
    kinds = {(a.field, a.kind) for a in check_schema(r.stats, schema, r.has_masks)}
    assert ("label", "missing_value") in kinds and ("label", "label_drift") in kinds


def test_mask_area_out_of_range_names_the_case(make_busi, tmp_path) -> None:
    schema = _schema_of(make_busi(per_class=4, name="train"))
    other = make_busi(per_class=4, name="other", seed=0)
    big = disc_mask(r=22)
    Image.fromarray(big.astype(np.uint8) * 255).save(other / "benign" / "benign (2)_mask.png")
    r = scan(discover(other))
    anomalies = check_schema(r.stats, schema, r.has_masks)
    area = [a for a in anomalies if a.field == "mask_area_fraction"]
    assert len(area) == 1 and area[0].case_ids == ("benign (2)",)


def _site_of(root, frames) -> None:
    for n, img in enumerate(frames):
        label = ("benign", "malignant")[n % 2]
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / label / f"{label}{n}.png")


def test_tinted_site_is_a_shift_although_the_reference_has_colour_overlays(tmp_path) -> None:
    from tests.conftest import textured

    grays = [textured(k, 64, 80) for k in range(12)]
    overlays = []
    for k in range(2):  # like BUSI: a few frames keep coloured calipers or text, the rest are gray
        rgb = np.repeat(textured(100 + k, 64, 80)[..., None], 3, axis=-1)
        rgb[30:33, 10:40] = (255, 0, 0)
        overlays.append(rgb)
    _site_of(tmp_path / "ref", grays + overlays)
    r = scan(discover(tmp_path / "ref"))
    schema = infer_schema(r.stats, r.has_masks)
    assert schema["categorical"]["is_gray"] == [False, True]  # colour is no new category at the new site
    assert [a for a in check_schema(r.stats, schema, r.has_masks) if a.kind == "shift"] == []
    # A vendor's sepia-tinted frames, same sizes and intensities.
    tinted = [np.stack([g, (g * 0.8).astype(np.uint8), (g * 0.55).astype(np.uint8)], -1) for g in grays[:6]]
    _site_of(tmp_path / "tinted", tinted)
    r2 = scan(discover(tmp_path / "tinted"))
    shifts = {a.field: a for a in check_schema(r2.stats, schema, r2.has_masks) if a.kind == "shift"}
    assert "colour_fraction" in shifts and len(shifts["colour_fraction"].case_ids) == 6
    # Frames padded with black around a smaller sector: dark background and aspect shift.
    padded = []
    for g in grays[:6]:
        frame = np.zeros((64, 128), np.uint8)
        frame[:, 24:104] = g
        padded.append(frame)
    _site_of(tmp_path / "padded", padded)
    r3 = scan(discover(tmp_path / "padded"))
    fields = {a.field for a in check_schema(r3.stats, schema, r3.has_masks) if a.kind == "shift"}
    assert {"dark_fraction", "aspect", "width"} <= fields


def test_schema_without_quantiles_checks_no_shift(make_busi) -> None:
    r = scan(discover(make_busi(per_class=2)))
    schema = infer_schema(r.stats, r.has_masks)
    schema.pop("quantiles")  # a schema written before version 2
    assert check_schema(r.stats, schema, r.has_masks) == []
