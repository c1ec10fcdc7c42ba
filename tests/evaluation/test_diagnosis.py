"""The diagnosis' own arithmetic: lesions found in the segmenter's map, and each image's answer from its lesions."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from data.discover import Case
from evaluation.diagnosis import cut_file, describe, diagnose, find_lesions


def test_lesions_are_found_at_the_segmenters_resolution_and_boxed_in_the_images_pixels(tmp_path) -> None:
    records = []
    for k, (h, w) in enumerate([(40, 60), (80, 40)]):
        Image.fromarray(np.zeros((h, w), np.uint8)).save(tmp_path / f"c{k}.png")
        records.append(Case(f"c{k}", tmp_path / f"c{k}.png", "benign"))
    probs = np.zeros((2, 20, 20), np.float32)
    probs[0, 2:5, 2:6] = 0.9
    probs[0, 10:15, 10:18] = 0.8  # the larger: first
    found = find_lesions(records, probs)
    np.testing.assert_allclose(found[0], [[20, 30, 30, 54], [4, 6, 10, 18]])  # x 2 down, x 3 across
    assert found[1].shape == (0, 4)


def test_an_image_is_normal_without_a_lesion_and_else_as_suspicious_as_its_worst() -> None:
    records = [Case(f"c{k}", f"c{k}.png", "benign") for k in range(3)]  # type: ignore[arg-type]
    bounds = [np.zeros((0, 4)), np.array([[2, 2, 5, 6], [10, 20, 15, 28]]), np.array([[0, 0, 3, 3]])]
    diagnosis = diagnose(records, bounds, np.array([0.2, 0.7, 0.1]))
    np.testing.assert_allclose(diagnosis.probs, [[1, 0, 0], [0, 0.3, 0.7], [0, 0.9, 0.1]])
    assert diagnosis.lesions[1] == [([2, 2, 5, 6], 0.2), ([10, 20, 15, 28], 0.7)]
    rows = describe(diagnosis, records)
    assert [r["answer"] for r in rows] == ["normal", "malignant", "benign"]
    assert rows[0]["lesions"] == [] and rows[1]["p_malignant"] == 0.7
    with pytest.raises(ValueError, match="3 lesions found but 2 classified"):
        diagnose(records, bounds, np.array([0.2, 0.7]))


def test_the_cut_is_kept_per_segmenter_and_post_processing(tmp_path) -> None:
    a, b = cut_file(tmp_path / "cls", tmp_path / "seg" / "a"), cut_file(tmp_path / "cls", tmp_path / "seg" / "b")
    assert a != b and a.parent == b.parent == tmp_path / "cls" / "diagnosis"
    assert cut_file(tmp_path / "cls", tmp_path / "seg" / "a", "largest").name == a.stem + "-largest.json"


def test_the_lesion_page_shows_the_least_suspicious_cancers_the_most_suspicious_benign_and_normals_given_a_lesion(
    tmp_path,
) -> None:
    from evaluation.diagnosis import lesion_rows
    from reports.plots import lesion_grid

    labels = ["malignant", "malignant", "malignant", "benign", "benign", "normal", "normal"]
    records = []
    for k, label in enumerate(labels):
        Image.fromarray(np.full((30, 40), 10 * k, np.uint8)).save(tmp_path / f"c{k}.png")
        records.append(Case(f"c{k}", tmp_path / f"c{k}.png", label))
    box = np.array([[2, 3, 12, 15]])
    bounds = [box, box, np.zeros((0, 4)), box, box, box, np.zeros((0, 4))]
    diagnosis = diagnose(records, bounds, np.array([0.9, 0.3, 0.6, 0.1, 0.4]))
    rows = lesion_rows(records, diagnosis, k=2)
    assert [t for t, _ in rows] == ["cancers, least suspicious", "benign, most suspicious", "normal, given a lesion"]
    ids = [[caption.split("\n")[0] for _, _, _, caption in panels] for _, panels in rows]
    assert ids == [["c2", "c1"], ["c3", "c4"], ["c5"]]  # c2 found no lesion: P 0, the first missed cancer
    image, boxes, p, caption = rows[0][1][1]
    assert image.shape == (30, 40, 1) and image[0, 0, 0] == 10 and boxes.tolist() == box.tolist() and p == [0.3]
    assert caption == "c1\nsaid benign, P(m) 0.30" and rows[0][1][0][1].shape == (0, 4)
    assert lesion_grid(rows, 0.5, tmp_path / "lesions.png").stat().st_size > 1000
    assert lesion_grid([("nothing", [])], None, tmp_path / "empty.png").is_file()
