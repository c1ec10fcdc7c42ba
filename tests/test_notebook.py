"""notebooks/quickstart.ipynb runs from top to bottom on the synthetic data, and says what it did."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO

NOTEBOOK = REPO / "notebooks" / "quickstart.ipynb"


def test_the_notebook_holds_the_generators_cells() -> None:
    sys.path.insert(0, str(REPO / "notebooks"))
    import make_quickstart

    expected = [(c.cell_type, c.source) for c in make_quickstart.notebook().cells]
    assert [(c.cell_type, c.source) for c in nbformat.read(NOTEBOOK, as_version=4).cells] == expected


@pytest.mark.slow
def test_quickstart_runs_and_every_step_shows_its_result(tmp_path) -> None:
    # A copy of the repo's notebooks folder inside tmp_path: its runs go to tmp_path/runs, not the checkout's.
    work = tmp_path / "notebooks"
    work.mkdir()
    for name in ("train.py", "evaluate.py", "predict.py", "export.py", "cli.py"):
        (tmp_path / name).symlink_to(REPO / name)
    for package in ("core", "data", "pipeline", "models", "losses", "metrics", "reports", "config", "evaluation",
                    "training", "serving", "inference"):  # fmt: skip
        (tmp_path / package).symlink_to(REPO / package)
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)
    nb = nbformat.read(work / NOTEBOOK.name, as_version=4)
    setup = nb.cells[1].source
    quick = "QUICK = dict(epochs=2, img_size=64, batch_size=8, export=False)"
    assert quick in setup
    nb.cells[1].source = setup.replace(
        quick, "QUICK = dict(epochs=1, img_size=32, batch_size=16, export=False)"
    )  # the suite's time
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(work)}}).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "lesion Dice" in text and "macro F1" in text and "lesion area" in text
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2  # the dataset's examples and the overlays
    for task in ("seg", "cls"):
        run = tmp_path / "runs" / "quickstart" / task / task
        assert (run / "report.html").is_file() and json.loads((run / "metrics.json").read_text())
    assert (tmp_path / "runs" / "quickstart" / "predict" / "predictions.csv").is_file()
    assert "report.html" in text and Path(tmp_path / "runs").is_dir()
