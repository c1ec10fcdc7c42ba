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
