"""`python -m pipeline preview` writes a picture a person can look at."""

from __future__ import annotations

import numpy as np
from PIL import Image

from pipeline.__main__ import main


def test_preview_writes_a_grid_png(make_busi, tmp_path, capsys) -> None:
    root = make_busi(per_class=4)
    out = tmp_path / "p.png"
    code = main(["preview", "--data-dir", str(root), "--img-size", "64", "--out", str(out)])
    assert code == 0 and str(out) in capsys.readouterr().out
    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape[0] > 300 and img.shape[1] > 600
    # Mask outlines are drawn in green on the gray images.
    green = (img[..., 1] > 200) & (img[..., 0] < 120) & (img[..., 2] < 150)
    assert green.sum() > 50


def test_preview_of_missing_data_is_a_clear_error(tmp_path, capsys) -> None:
    code = main(["preview", "--data-dir", str(tmp_path / "nope"), "--out", str(tmp_path / "p.png")])
    err = capsys.readouterr().err
    assert code == 2 and "nope" in err and "Traceback" not in err
    assert not (tmp_path / "p.png").exists()
