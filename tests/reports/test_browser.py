"""report.html in a real browser: headless Chromium renders it, with its pictures, offline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from reports.html import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def chromium() -> str:
    """Debian's Chromium; missing is a failure in CI (.ci/run installs it) and a skip elsewhere."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium not found (CI installs Debian's chromium package in .ci/run)")
        pytest.skip("chromium not found")
    return CHROMIUM


def test_chromium_renders_the_report_with_its_tables_and_pictures(chromium, tmp_path) -> None:
    run = tmp_path / "run"
    (run / "plots").mkdir(parents=True)
    plot = np.zeros((200, 600, 3), np.uint8)
    plot[:, :300] = (200, 30, 30)  # a red half and a blue half, so the picture shows in the screenshot
    plot[:, 300:] = (30, 30, 200)
    Image.fromarray(plot).save(run / "plots" / "learning_curves.png")
    (run / "config.json").write_text(json.dumps({"task": "seg", "model": "unet", "img_size": 96, "weights": "none"}))
    metrics = {"dice": 0.8123, "dice_ci95": [0.7, 0.9], "fold": 0, "train_cases": 10, "val_cases": 4}
    (run / "metrics.json").write_text(json.dumps(metrics))
    page = write_report(run)
    shot = tmp_path / "shot.png"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1000,1400",
           f"--screenshot={shot}", page.as_uri()]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    image = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert image.shape == (1400, 1000, 3)
    ink = (image.sum(-1) < 600).mean()  # text, table lines and the picture: not a blank page
    assert ink > 0.02
    red = ((image[..., 0] > 150) & (image[..., 1] < 80) & (image[..., 2] < 80)).sum()
    blue = ((image[..., 2] > 150) & (image[..., 0] < 80) & (image[..., 1] < 80)).sum()
    assert red > 10_000 and blue > 10_000  # the embedded picture was drawn
