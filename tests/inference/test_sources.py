"""--source: files, folders and globs."""

from __future__ import annotations

import pytest

from inference.sources import collect_sources


def test_folder_gives_images_without_ground_truth_masks(tmp_path):
    for name in ("b (1).png", "b (1)_mask.png", "b (1)_mask_1.png", "a.jpg", "c.bmp", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    files, skipped = collect_sources([str(tmp_path)])
    assert [f.name for f in files] == ["a.jpg", "b (1).png", "c.bmp"]
    assert skipped == 2


def test_files_and_globs_keep_order_and_drop_repeats(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("x.png", "sub/y.png", "sub/z.jpeg"):
        (tmp_path / name).write_bytes(b"x")
    files, _ = collect_sources([str(tmp_path / "x.png"), str(tmp_path / "**" / "*.png"), str(tmp_path / "x.png")])
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["x.png", "sub/y.png"]


def test_a_source_matching_nothing_is_named_in_the_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        collect_sources([str(tmp_path / "nothing_here*.png")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no PNG, JPEG or BMP images in folder"):
        collect_sources([str(tmp_path / "empty")])
