"""Images unlike the training images: the description, the per-image flags and the dataset's summary."""

from __future__ import annotations

import numpy as np
import pytest

from data.schema import SHIFT_FIELDS
from data.shift import describe, image_statistics, outside, summarize, summary_line
from tests.conftest import textured


def _tinted(gray: np.ndarray) -> np.ndarray:
    """A colour-tinted frame of the same scan (another vendor's display)."""
    rgb = np.repeat(gray[:, :, None], 3, axis=2).astype(np.float32)
    return np.clip(rgb * np.array([1.0, 0.75, 0.45]), 0, 255).astype(np.uint8)


def test_a_tinted_site_is_flagged_and_summarized_against_gray_training_images() -> None:
    training = [image_statistics(textured(k)) for k in range(20)]
    description = describe(training)
    assert description["n_images"] == 20 and set(description["fields"]) == set(SHIFT_FIELDS)
    colour = description["fields"]["colour_fraction"]
    assert colour["min"] == colour["max"] == 0.0  # gray images have no colour
    assert outside(training[3], description) == []  # a training image is inside its own range
    new = [image_statistics(_tinted(textured(100 + k))) for k in range(5)]
    flags = [outside(s, description) for s in new]
    assert all("colour_fraction" in f for f in flags)
    summary = summarize(new[:4] + training[:6], description)
    assert summary["n_images"] == 10 and summary["flagged"] == 4 and summary["per_statistic"]["colour_fraction"] == 4
    assert "colour_fraction" not in summary["shifted"]  # a few tinted images: the median is still a gray image's
    tinted_only = summarize(new, description)
    assert tinted_only["shifted"]["colour_fraction"]["median"] > 0.5
    line = summary_line(tinted_only)
    assert (
        line.startswith("5 of 5 image(s) look unlike the training images (")
        and "colour_fraction" in line.split("shifted: ")[1]
    )


def test_statistics_match_the_dataset_scan(make_busi) -> None:
    from data.discover import discover
    from data.imageio import read_image
    from data.scan import scan

    root = make_busi(per_class=2)
    stats = scan(discover(root)).stats.set_index("id")
    for case in discover(root).values():
        mine = image_statistics(read_image(case.image))
        for f in SHIFT_FIELDS:
            assert mine[f] == pytest.approx(float(stats.loc[case.case_id, f])), (case.case_id, f)


def test_a_description_needs_images() -> None:
    with pytest.raises(ValueError, match="at least one image"):
        describe([])
