"""Plots a person would rather look at than read: curves, histograms, overlays."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from core.atomic import atomic_write  # noqa: E402


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)
    return path


def learning_curves(rows: Sequence[dict[str, float]], path: Path, metric: str) -> Path:
    """Training and validation loss and ``metric`` per epoch, with the best epoch marked."""
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key in zip(axes, ("loss", metric), strict=True):
        if key in rows[0]:
            ax.plot(epochs, [r[key] for r in rows], "o-", ms=3, label=f"train {key}")
        if f"val_{key}" in rows[0]:
            vals = [r[f"val_{key}"] for r in rows]
            ax.plot(epochs, vals, "o-", ms=3, label=f"val {key}")
            best = int(np.argmin(vals) if key == "loss" else np.argmax(vals))
            ax.axvline(epochs[best], color="gray", ls=":", lw=1)
            ax.annotate(
                f"best {vals[best]:.3f}",
                (epochs[best], vals[best]),
                textcoords="offset points",
                xytext=(5, 5),
                fontsize=8,
            )
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def score_histogram(scores: np.ndarray, labels: Sequence[str], path: Path, name: str = "Dice") -> Path:
    """Histogram of per-image scores, stacked by class, with the mean marked."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    classes = sorted(set(labels))
    data = [scores[np.array(labels) == c] for c in classes]
    ax.hist(data, bins=np.linspace(0, 1, 21), stacked=True, label=classes)
    ax.axvline(scores.mean(), color="k", ls="--", lw=1, label=f"mean {scores.mean():.3f}")
    ax.set_xlabel(f"per-image {name}")
    ax.set_ylabel("images")
    ax.legend(fontsize=8)
    ax.set_title(f"{name} over {len(scores)} validation images")
    return _save(fig, path)


def _overlay(image: np.ndarray, truth: np.ndarray, prob: np.ndarray) -> np.ndarray:
    rgb = np.clip(image, 0, 255).astype(np.uint8)
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    rgb = np.ascontiguousarray(rgb)
    for m, color in ((truth[..., 0] > 0.5, (40, 255, 80)), (prob[..., 0] >= 0.5, (255, 60, 60))):
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(rgb, contours, -1, color, 1)
    return rgb


def overlay_grid(
    images: np.ndarray,
    truths: np.ndarray,
    probs: np.ndarray,
    ids: Sequence[str],
    scores: np.ndarray,
    path: Path,
    k: int = 6,
) -> Path:
    """The ``k`` best and ``k`` worst images by score: truth in green, prediction in red."""
    order = np.argsort(scores)
    worst, best = order[:k], order[::-1][:k]
    rows = [("best", best), ("worst", worst)]
    fig, axes = plt.subplots(2, k, figsize=(2.2 * k, 5.8), squeeze=False)
    for r, (title, idx) in enumerate(rows):
        for c in range(k):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(idx):
                i = idx[c]
                ax.imshow(_overlay(images[i], truths[i], probs[i]))
                ax.set_title(f"{title}: {ids[i]}\nDice {scores[i]:.2f}", fontsize=7)
    fig.suptitle("green: ground truth, red: prediction (threshold 0.5)", fontsize=9)
    return _save(fig, path)


def confusion_plot(report: dict, class_names: Sequence[str], path: Path) -> Path:
    """Confusion matrix as counts and row-normalized (recall on the diagonal), side by side."""
    counts = np.array(report["confusion"])
    norm = np.array(report["confusion_normalized"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, mat, title, fmt in ((axes[0], counts, "counts", "{:d}"), (axes[1], norm, "row-normalized", "{:.2f}")):
        im = ax.imshow(mat, cmap="Blues", vmin=0, vmax=mat.max() if mat.max() > 0 else 1)
        for (i, j), v in np.ndenumerate(mat):
            color = "white" if v > 0.6 * (mat.max() or 1) else "black"
            ax.text(j, i, fmt.format(int(v) if fmt == "{:d}" else v), ha="center", va="center", color=color)
        ax.set_xticks(range(len(class_names)), class_names)
        ax.set_yticks(range(len(class_names)), class_names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"confusion matrix ({title})")
        fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def roc_plot(y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str], path: Path) -> Path:
    """One-vs-rest ROC curve of each class present, AUC in the legend."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = plt.subplots(figsize=(5.2, 4.8))
    for c, name in enumerate(class_names):
        pos = y_true == c
        if pos.all() or not pos.any():
            continue
        fpr, tpr, _ = roc_curve(pos, probs[:, c])
        ax.plot(fpr, tpr, lw=1.5, label=f"{name} (AUC {roc_auc_score(pos, probs[:, c]):.3f}, n={int(pos.sum())})")
    ax.plot([0, 1], [0, 1], color="gray", ls=":", lw=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC, one class vs the rest")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def reliability_plot(
    y_true: np.ndarray,
    before: np.ndarray,
    after: np.ndarray,
    class_names: Sequence[str],
    path: Path,
    temperature: float,
    ece: tuple[float, float],
) -> Path:
    """Reliability diagram of each class (one vs the rest): observed rate against mean predicted probability.

    ``before`` and ``after`` are the probabilities without and with temperature scaling; a dot's area
    follows its bin's size, and the title gives the top-label ECE of each.
    """
    from metrics.calibration import reliability_curve

    fig, axes = plt.subplots(1, len(class_names), figsize=(3.6 * len(class_names), 3.8), squeeze=False)
    for c, (ax, name) in enumerate(zip(axes[0], class_names, strict=True)):
        hit = (y_true == c).astype(float)
        for probs, style, label in (
            (before, dict(color="gray", ls="--"), "before"),
            (after, {}, f"T = {temperature:.2f}"),
        ):
            curve = reliability_curve(hit, probs[:, c])
            ax.plot(curve["predicted"], curve["observed"], marker=None, lw=1.3, label=label, **style)
            ax.scatter(curve["predicted"], curve["observed"], s=8 + 120 * np.sqrt(np.array(curve["n"]) / len(hit)),
                       color=style.get("color", "C0"), alpha=0.7)  # fmt: skip
        ax.plot([0, 1], [0, 1], color="black", ls=":", lw=0.8)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel=f"predicted P({name})", title=f"{name} (n={int(hit.sum())})")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("observed rate")
    axes[0, 0].legend(fontsize=8, loc="upper left")
    fig.suptitle(f"Reliability: top-label ECE {ece[0]:.3f} before, {ece[1]:.3f} after temperature scaling", fontsize=10)
    return _save(fig, path)


def confident_wrong(y_true: np.ndarray, probs: np.ndarray, k: int = 12) -> np.ndarray:
    """Indices of the ``k`` misclassified images with the highest probability of the wrong answer, highest first."""
    pred = probs.argmax(-1)
    wrong = np.flatnonzero(pred != y_true)
    return wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:k]


def confident_wrong_grid(
    images: np.ndarray,
    y_true: np.ndarray,
    probs: np.ndarray,
    ids: Sequence[str],
    class_names: Sequence[str],
    path: Path,
    k: int = 12,
    explain: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> Path:
    """The ``k`` misclassified images the model was most sure about (:func:`confident_wrong`).

    ``explain(indices, classes)`` returns heat maps ``(n, H, W)`` in [0, 1] of those images for those
    classes (Grad-CAM of the wrong answer); they are drawn over the images.
    """
    pred = probs.argmax(-1)
    wrong = np.flatnonzero(pred != y_true)  # for the title's count
    order = confident_wrong(y_true, probs, k)
    maps = explain(order, pred[order]) if explain is not None and len(order) else None
    cols = 6
    rows = max(1, -(-len(order) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for j, (ax, i) in enumerate(zip(axes.ravel(), order, strict=False)):
        img = np.clip(images[i], 0, 255).astype(np.uint8)
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray")
        if maps is not None:
            ax.imshow(maps[j], cmap="jet", alpha=0.4, vmin=0, vmax=1)
        ax.set_title(
            f"{ids[i]}\ntrue {class_names[y_true[i]]}, said {class_names[pred[i]]} {probs[i, pred[i]]:.2f}",
            fontsize=7,
        )
    title = "most confident mistakes" if len(order) else "no misclassified images"
    title += ", Grad-CAM of the answer given" if maps is not None else ""
    fig.suptitle(f"{title} ({len(wrong)} wrong of {len(y_true)})", fontsize=9)
    return _save(fig, path)


def breakdown_plot(result: dict, key: str, path: Path, name: str | None = None) -> Path | None:
    """One horizontal bar per site and per scanner: ``key`` with its 95% interval, the overall value as a line.

    Args:
        result: Metrics with ``key`` over every image and the ``per_site`` / ``per_device`` tables
            (:func:`data.sources.breakdowns`), each entry with ``n``, ``key`` and optionally ``f"{key}_ci95"``.
        key: The metric to draw (``dice``, ``malignant_auc``).
        path: Where the PNG goes.
        name: Axis label (default ``key``).

    Returns:
        The path, or None (nothing drawn) when ``result`` has no table or no overall ``key``.
    """
    kinds = {"per_site": "site", "per_device": "scanner"}
    rows = [
        (f"{kinds[k]}: {value} (n={e['n']})", e)
        for k in kinds
        for value, e in result.get(k, {}).items()
        if e.get(key) is not None
    ]
    if not rows or result.get(key) is None:
        return None
    overall = result[key]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.4))
    ys = np.arange(len(rows))[::-1]
    vals = np.array([e[key] for _, e in rows], dtype=float)
    cis = np.array([e.get(f"{key}_ci95") or [v, v] for (_, e), v in zip(rows, vals, strict=True)], dtype=float)
    colors = ["tab:blue" if label.startswith("site") else "tab:orange" for label, _ in rows]
    ax.barh(ys, vals, color=colors, alpha=0.7)
    ax.errorbar(vals, ys, xerr=np.abs(cis.T - vals), fmt="none", ecolor="k", capsize=3, lw=1)
    for y, v in zip(ys, vals, strict=True):
        ax.text(0.01, y, f"{v:.3f}", va="center", fontsize=8)
    ax.axvline(overall, color="k", ls="--", lw=1, label=f"all images {overall:.3f}")
    ax.set_yticks(ys, [label for label, _ in rows], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"{name or key} (95% interval over patients)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def curves_plot(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    path: Path,
    xlabel: str,
    ylabel: str,
    logx: bool = False,
    references: dict[str, float] | None = None,
) -> Path:
    """One line with markers per named ``(xs, ys)`` series (a learning curve over training-set sizes, say),
    and a dashed horizontal line per named value of ``references`` (a model's score without training)."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, "o-", ms=4, label=name)
    for k, (name, y) in enumerate((references or {}).items()):
        ax.axhline(y, ls="--", lw=1, color=f"C{len(series) + k}", label=name)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


LesionPanel = tuple[np.ndarray, np.ndarray, Sequence[float], str]
"""One image of :func:`lesion_grid`: uint8 ``(H, W, 1|3)``, its lesion boxes ``(k, 4)`` ``[y0, x0, y1, x1]`` in
its pixels, each lesion's P(malignant), and the caption."""


def lesion_grid(rows: Sequence[tuple[str, Sequence[LesionPanel]]], cut: float | None, path: Path, k: int = 5) -> Path:
    """The diagnosis' lesions drawn on their images, one titled row per group (at most ``k`` images each): each
    lesion's box with its P(malignant), red at or above ``cut`` (the malignancy cut; None: 0.5), else yellow."""
    cut = 0.5 if cut is None else cut
    rows = [(title, panels) for title, panels in rows if len(panels)] or [("no images", [])]
    fig, axes = plt.subplots(len(rows), k, figsize=(2.4 * k, 2.7 * len(rows)), squeeze=False)
    for r, (title, panels) in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            ax.axis("off")
            if c >= len(panels):
                continue
            image, boxes, p, caption = panels[c]
            ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray")
            for (y0, x0, y1, x1), q in zip(np.reshape(boxes, (-1, 4)), p, strict=True):
                colour = "red" if q >= cut else "yellow"
                ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=1.2))
                ax.text(x0, y0, f"{q:.2f}", color=colour, fontsize=7, va="bottom")
            ax.set_title(f"{title}\n{caption}" if c == 0 else caption, fontsize=7, loc="left")
    fig.suptitle(f"lesions found by the segmenter, P(malignant) each (red: at or above the cut {cut:.3f})", fontsize=9)
    return _save(fig, path)
