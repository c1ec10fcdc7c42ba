"""Write notebooks/quickstart.ipynb (its cells, without outputs); execute it to fill them.

Usage:
    python notebooks/make_quickstart.py
    python -m jupyter nbconvert --to notebook --execute --inplace notebooks/quickstart.ipynb   # or nbclient
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    (
        "md",
        """# Quickstart: data, a segmenter, a classifier, evaluation, prediction, the report

Everything here runs on the CPU in a few minutes, on the built-in synthetic data (generated on
first use, no download). Point `DATA` at a BUSI-layout folder or a manifest CSV to use real images,
and drop the `QUICK` settings to train with the defaults of `train.py`.""",
    ),
    (
        "code",
        """import os
from pathlib import Path

if Path.cwd().name == "notebooks":  # the scripts and packages live at the repo root
    os.chdir(Path.cwd().parent)

import matplotlib.pyplot as plt
from IPython.display import display
from PIL import Image

from data.synthetic import ensure_synthetic

DATA = ensure_synthetic()  # the built-in synthetic dataset (BUSI layout)
PROJECT = Path("runs/quickstart")
QUICK = dict(epochs=2, img_size=64, batch_size=8, export=False)  # small and fast: 2 epochs at 64 px
print(DATA)""",
    ),
    (
        "md",
        """## 1. Inspect the data

`analyze_dataset` validates every case, merges extra masks, finds duplicates and makes grouped
folds (`python -m data inspect` does the same and writes the report).""",
    ),
    (
        "code",
        """from data.report import analyze_dataset, format_summary

analysis = analyze_dataset(DATA)
print(format_summary(analysis))""",
    ),
    (
        "code",
        """fig, axes = plt.subplots(1, 3, figsize=(9, 3))
for ax, label in zip(axes, ["normal", "benign", "malignant"], strict=True):
    image = sorted((DATA / label).glob("*).png"))[0]
    ax.imshow(Image.open(image), cmap="gray")
    mask = image.with_name(image.stem + "_mask.png")
    if mask.is_file():
        ax.contour(Image.open(mask), levels=[127], colors="yellow")
    ax.set_title(label)
    ax.axis("off")
display(fig)  # explicit: the project's plotting switches matplotlib to its file backend
plt.close(fig)""",
    ),
    (
        "md",
        """## 2. Train a lesion segmenter and a classifier

`train.run` is `python train.py` from Python: the same options, the same run folder
(`runs/quickstart/<task>/<name>`), the metrics returned.""",
    ),
    (
        "code",
        """import train

seg = train.run(task="seg", data_dir=str(DATA), project=str(PROJECT), name="seg", exist_ok=True, **QUICK)
print(f"lesion Dice {seg['lesion_dice']:.3f}, normal images left empty {seg['normal_left_empty']:.0%}")""",
    ),
    (
        "code",
        """# The default classifier: EfficientNet-Lite0 with its ImageNet weights (installed with the project, no
# download). Three epochs, all with the encoder frozen: a head on ImageNet features learns fast on a CPU.
quick_cls = {**QUICK, "epochs": 3, "freeze_epochs": 3}
cls = train.run(task="cls", data_dir=str(DATA), project=str(PROJECT), name="cls", exist_ok=True, **quick_cls)
print(f"macro F1 {cls['macro_f1']:.3f}, macro AUC {cls['macro_auc']:.3f}")""",
    ),
    (
        "md",
        """## 3. Evaluate a run again, with flip test-time augmentation

(In one Python process that trained before, TensorFlow may warn that a prediction function was
traced again: each model has its own, and the warning counts them together.)""",
    ),
    (
        "code",
        """import evaluate

results = evaluate.main(evaluate.parse_args(["--run", seg["run_dir"], "--tta"]))
print({k: round(v["dice"], 3) for k, v in results.items()})""",
    ),
    (
        "md",
        """## 4. Predict new images

`predict.run` writes `predictions.csv`, the masks at each image's own size and overlays.""",
    ),
    (
        "code",
        """import predict

images = [str(p) for p in sorted((DATA / "malignant").glob("*).png"))[:3]]
out = PROJECT / "predict"
prediction = predict.run(images, model=seg["run_dir"], out=str(out))
for row in prediction.rows:
    print(Path(row["file"]).name, f"lesion area {row['lesion_area_fraction']:.1%}")
fig, axes = plt.subplots(1, len(prediction.rows), figsize=(9, 3))
for ax, row in zip(axes, prediction.rows, strict=True):
    ax.imshow(Image.open(row["overlay"]))
    ax.axis("off")
display(fig)
plt.close(fig)""",
    ),
    (
        "md",
        """## 5. The report

Every run folder holds `report.html`: a model card, every figure with its interval, the plots and
where the run came from, in one file that opens offline.""",
    ),
    (
        "code",
        """from IPython.display import HTML

report = Path(seg["run_dir"]) / "report.html"
print(report, f"{report.stat().st_size / 1e6:.1f} MB")
display(HTML(f'<a href="{report.resolve().as_uri()}" target="_blank">open {report.name}</a>'))""",
    ),
]


def notebook() -> nbformat.NotebookNode:
    """The quickstart notebook's cells, unexecuted."""
    cells = [new_markdown_cell(t) if kind == "md" else new_code_cell(t) for kind, t in CELLS]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


if __name__ == "__main__":
    path = Path(__file__).with_name("quickstart.ipynb")
    nbformat.write(notebook(), path)
    print(f"Wrote {path}")
