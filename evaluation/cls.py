"""How a classification run is scored: predict, calibrate, report with intervals, the malignancy cut, plots.

:func:`evaluate_cls` is the task's :class:`evaluation.base.Evaluator`; :func:`report_cls` writes the
report of any set of predictions (an ensemble's too).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from config.train import TrainConfig
from core.atomic import write_text
from core.classes import CLASS_NAMES
from core.errors import MissingFileError
from data.discover import Case
from data.sources import breakdowns
from evaluation.adapted import adapted_cut, adapted_temperature, calibrated_source, source_predictions
from evaluation.base import EvalRequest, scored_with
from evaluation.calibrate import FittedTemperature, fit_fold_temperature
from evaluation.cut import TARGET_SENSITIVITY, FittedCut, fit_fold_cut
from evaluation.run_files import load_fitted_cut, load_fitted_temperature, save_cut, save_temperature
from evaluation.shift import shift_report
from evaluation.support import Basis
from evaluation.tta import combine_views, predict_records
from metrics.calibration import apply_temperature, calibration_figures
from metrics.classification import classification_report, format_report, malignancy_report
from models.classifier import LOGITS
from models.gradcam import cam_model, grad_cam
from models.registry import get_model_entry
from pipeline.dataset import build_dataset
from reports.plots import (
    breakdown_plot,
    confident_wrong_grid,
    confusion_plot,
    learning_curves,
    reliability_plot,
    roc_plot,
)
from reports.stats import BREAKDOWN_BOOT

PREDICTIONS_NAME = "predictions.csv"
SUMMARY_KEYS = (
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "macro_auc",
    "malignant_auc",
    "lesion_called_normal",
    "sensitivity",
    "specificity",
    "ece",
    "brier",
)
"""The classification figures of a run's summary line and cross-validation summary."""


def predict_cls(
    model: keras.Model, records: Sequence[Case], cfg: TrainConfig, tta: bool = False
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Images (uint8), integer labels and the predicted probabilities of ``records``, in record order.

    The probabilities are one array per view: the image's, and with ``tta`` the mirrored image's
    (:func:`evaluation.tta.model_views`).
    """
    images, onehot, views = predict_records(model, records, cfg, "cls", tta)
    return images.astype(np.uint8), np.argmax(onehot, axis=-1), [v.astype(np.float64) for v in views]


def run_images(run_dir: Path, ids: Sequence[str]) -> np.ndarray:
    """The images of ``ids`` as a run's pipeline feeds them to its model (for plots)."""
    from data.sources import discover_sources, resolve_sources

    cfg = TrainConfig.load(run_dir / "config.json")
    cases = discover_sources(resolve_sources(cfg.data_dir))
    missing = [i for i in ids if i not in cases]
    if missing:
        where = " ".join(cfg.data_dir) or "the synthetic data"
        raise MissingFileError(f"cases {missing[:5]} of {run_dir} are no longer in {where}")
    batches = build_dataset([cases[i] for i in ids], "cls", cfg.pipeline(batch_size=32, augment="none"), training=False)
    return np.concatenate([x.numpy().astype(np.uint8) for x, _ in batches])


def predictions_csv(ids: Sequence[str], labels: np.ndarray, probs: np.ndarray) -> str:
    """One row per case: id, true and predicted class, and each class's probability."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["case_id", "label", "pred", *[f"prob_{c}" for c in CLASS_NAMES]])
    for i, y, p in zip(ids, labels, probs, strict=True):
        w.writerow([i, CLASS_NAMES[y], CLASS_NAMES[int(np.argmax(p))], *[f"{v:.6f}" for v in p]])
    return buf.getvalue()


def read_predictions(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Read :func:`predictions_csv`'s file: ids, integer labels, probabilities."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    ids = [r["case_id"] for r in rows]
    labels = np.array([CLASS_NAMES.index(r["label"]) for r in rows], dtype=int)
    probs = np.array([[float(r[f"prob_{c}"]) for c in CLASS_NAMES] for r in rows])
    return ids, labels, probs


def report_cls(
    ids: Sequence[str],
    labels: np.ndarray,
    probs: np.ndarray,
    out_dir: Path,
    images: np.ndarray | None = None,
    history: list[dict[str, float]] | None = None,
    explain: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> dict[str, Any]:
    """Metrics with CIs, ``predictions.csv`` and the plots of one set of predictions, in ``out_dir``.

    ``explain`` (see :func:`grad_cam_of`) draws heat maps over the most confident mistakes.
    """
    result = classification_report(labels, probs, CLASS_NAMES)
    print(format_report(result))
    write_text(out_dir / PREDICTIONS_NAME, predictions_csv(ids, labels, probs))
    plots = out_dir / "plots"
    if history:
        learning_curves(history, plots / "learning_curves.png", "f1")
    confusion_plot(result, CLASS_NAMES, plots / "confusion_matrix.png")
    roc_plot(labels, probs, CLASS_NAMES, plots / "roc.png")
    if images is not None:
        confident_wrong_grid(images, labels, probs, ids, CLASS_NAMES, plots / "confident_wrong.png", explain=explain)
    return result


def grad_cam_of(
    model: keras.Model, cfg: TrainConfig, images: np.ndarray
) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """``explain(indices, classes)``: Grad-CAM maps of ``images[indices]`` for ``classes`` (:mod:`models.gradcam`).

    None, with a note, when the registry names no Grad-CAM layer for ``cfg.model`` or ``model`` lacks
    it or the ``logits`` layer (a weights file not built by the registry's builder).
    """
    layer = get_model_entry(cfg.model).cam_layer_for(cfg.task)
    names = {lyr.name for lyr in model.layers}
    if layer is None or not {layer, LOGITS} <= names:
        print(f"no Grad-CAM maps: {model.name!r} has no {layer!r} and {LOGITS!r} layers")
        return None

    def explain(indices: np.ndarray, classes: np.ndarray) -> np.ndarray:
        return grad_cam(cam_model(model, layer), images[indices].astype(np.float32), classes)[0]

    return explain


FOLD_CUT = "the cut chosen on the run's validation fold"


def malignancy_cut(
    records: Sequence[Case],
    probs: np.ndarray,
    fold_dir: Path | None,
    fit: bool,
    own_data: bool,
    target_sensitivity: float = TARGET_SENSITIVITY,
    adapted: tuple[FittedCut | None, Basis] | None = None,
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """The cut on P(malignant) that scores each record, and what to report about it (its ``rule`` too).

    ``fit`` (training's evaluation of the validation fold) chooses the fold's cuts for ``target_sensitivity``
    (:mod:`evaluation.cut`) and saves them in ``fold_dir``; otherwise those saved there are used (none:
    no sensitivity or specificity). The fold's own cases are scored with their cross-fitted half's cut;
    ``own_data`` False (another dataset, whose ids may collide with the run's) scores every case with the
    fold's. ``adapted`` (an adapted run's cut, :func:`evaluation.adapted.adapted_cut`) is used in place of fitting.
    """
    ids = [r.case_id for r in records]
    groups = [r.group or r.case_id for r in records]
    p_malignant = probs[:, CLASS_NAMES.index("malignant")]
    if adapted is not None:
        fitted = adapted[0]
    else:
        fitted = fit_fold_cut(ids, [r.label for r in records], p_malignant, groups, target_sensitivity) if fit else None
    if fitted is not None and fold_dir is not None and fit:
        save_cut(fold_dir, fitted)
    fitted = fitted or load_fitted_cut(fold_dir)
    if fitted is None:
        return None, {"threshold": None, "scored_with": "no cut (the run has none)"}
    info = {"threshold": fitted.threshold, "rule": fitted.rule}
    if adapted is not None:
        info["basis"] = adapted[1].to_dict()
    if not own_data:
        return np.full(len(ids), fitted.threshold), {**info, "scored_with": FOLD_CUT}
    how = scored_with(ids, {i for half, t in fitted.halves if t is not None for i in half}, "cut chosen", FOLD_CUT)
    return fitted.for_cases(ids), {**info, "scored_with": how}


def cls_breakdowns(
    records: Sequence[Case], labels: np.ndarray, probs: np.ndarray, cuts: np.ndarray | None
) -> dict[str, Any]:
    """Accuracy and the malignancy figures per site and per scanner (``per_site``, ``per_device``); ``cuts``
    holds each record's cut on P(malignant) (:func:`malignancy_cut`)."""

    def entry(idx: np.ndarray) -> dict[str, Any]:
        recs = [records[i] for i in idx]
        out = {"n": len(idx), "accuracy": float((probs[idx].argmax(1) == labels[idx]).mean())}
        groups = [r.group or r.case_id for r in recs]
        labels_idx = [r.label for r in recs]
        cut = None if cuts is None else cuts[idx]
        out.update(malignancy_report(labels_idx, probs[idx], CLASS_NAMES, groups, cut, n_boot=BREAKDOWN_BOOT))
        return out

    return breakdowns(records, entry)


FOLD_TEMPERATURE = "the temperature fitted on the run's validation fold"


def calibrate(
    ids: Sequence[str],
    labels: np.ndarray,
    raw: np.ndarray,
    class_labels: Sequence[str],
    groups: Sequence[str],
    fold_dir: Path | None,
    fit: bool,
    own_data: bool,
    adapted: tuple[FittedTemperature, Basis] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Temperature-scaled probabilities of ``raw`` and what to report about the temperature.

    ``fit`` (training's evaluation of the validation fold) fits the fold's temperatures
    (:mod:`evaluation.calibrate`) and saves them in ``fold_dir``; otherwise those saved there are used
    (none: the probabilities stay as they are). The fold's own cases are scored with their
    cross-fitted half's temperature; ``own_data`` False (another dataset, whose ids may collide with
    the run's) scores every case with the fold's. ``adapted`` (an adapted run's temperature,
    :func:`evaluation.adapted.adapted_temperature`) is used in place of fitting.
    """
    if adapted is not None:
        fitted = adapted[0]
    else:
        fitted = fit_fold_temperature(ids, labels, raw, class_labels, groups) if fit else None
    if fitted is not None and fold_dir is not None and fit:
        save_temperature(fold_dir, fitted)
    fitted = fitted or load_fitted_temperature(fold_dir)
    if fitted is None:
        return raw, {"temperature": None, "scored_with": "no temperature (the run has none)"}
    temps = fitted.for_cases(ids) if own_data else np.full(len(ids), fitted.temperature)
    probs = raw.copy()
    for t in np.unique(temps):
        probs[temps == t] = apply_temperature(raw[temps == t], float(t))
    members = {i for half, _ in fitted.halves for i in half} if own_data else set()
    how = scored_with(ids, members, "temperature fitted", FOLD_TEMPERATURE)
    basis = {"basis": adapted[1].to_dict()} if adapted is not None else {}
    return probs, {"temperature": fitted.temperature, "scored_with": how, **basis}


def _calibration_report(result, labels, raw, probs, groups, calibration, out_dir: Path) -> None:
    """ECE and Brier score after calibration, both before and after in ``calibration``, the reliability plot."""
    before, after = calibration_figures(labels, raw, groups), calibration_figures(labels, probs, groups)
    result.update(ece=after["ece"], ece_ci95=after["ece_ci95"], brier=after["brier"], brier_ci95=after["brier_ci95"])
    result["calibration"] = {**calibration, "before": before, "after": after}
    reliability_plot(
        labels, raw, probs, CLASS_NAMES, out_dir / "plots" / "reliability.png",
        calibration["temperature"] or 1.0, (before["ece"], after["ece"]),
    )  # fmt: skip


def evaluate_cls(model: keras.Model, cfg: TrainConfig, request: EvalRequest) -> dict[str, Any]:
    """Predict the records and write the report (see :func:`report_cls`), with the malignancy figures.

    Malignant against benign (:func:`metrics.classification.malignancy_report`) is scored on the
    lesion images with intervals bootstrapped over patients (a case's ``group``, else the image), and
    broken down by site and scanner when the records say. Sensitivity and specificity are at the cut on
    P(malignant) that :func:`malignancy_cut` gives each image (``fit``: chosen on the validation fold,
    each half scored with the other half's cut; ``malignancy_cut`` says which scored). ``tta`` scores
    the mean probabilities of each image and its mirror, each view calibrated first, as ``predict.py --tta``
    gives them (:func:`evaluation.tta.combine_views`).

    Every figure is of the temperature-scaled probabilities (:func:`calibrate`, which says how
    ``fit``, ``fold_dir`` and ``own_data`` choose the temperature), what ``predict.py`` and the export
    give; ``calibration`` holds the ECE, Brier score and NLL before and after it, with intervals over
    patients, and ``plots/reliability.png`` draws both. ``plots/confident_wrong.png`` shows the most
    confident mistakes with the Grad-CAM map of the answer given.
    """
    records, fold_dir, out_dir = list(request.records), request.fold_dir, request.out_dir
    images, labels, views = predict_cls(model, records, cfg, request.tta)
    ids = [r.case_id for r in records]
    names = [r.label for r in records]
    groups = [r.group or r.case_id for r in records]
    source = request.source if request.fit else None
    fold = (ids, labels, views[0], names, groups)
    adapted_t = adapted_temperature(model, cfg, fold, source) if source else None
    # Each view calibrated (the first fits the temperature when asked), then combined as predict.py --tta does.
    first, calibration = calibrate(*fold, fold_dir, request.fit, request.own_data, adapted_t and adapted_t[:2])
    rest = [calibrate(ids, labels, v, names, groups, fold_dir, False, request.own_data)[0] for v in views[1:]]
    raw, probs = combine_views(views, spatial=False), combine_views([first, *rest], spatial=False)
    history = list(request.history)
    result = report_cls(ids, labels, probs, out_dir, images, history, grad_cam_of(model, cfg, images))
    result["tta"] = request.tta
    flags, result["shift"] = shift_report(records, fold_dir) if request.shift else ([], None)
    if result["shift"] is not None:
        result["shift"]["flagged_ids"] = {r.case_id: f for r, f in zip(records, flags, strict=True) if f}
    _calibration_report(result, labels, raw, probs, groups, calibration, out_dir)
    adapted_c = None
    if source:
        ref = adapted_t[2]

        def source_p() -> tuple[np.ndarray, np.ndarray]:  # the source's cases, predicted once, when needed
            ref.update(ref or source_predictions(model, cfg, source))
            return calibrated_source(ref, calibration["temperature"])

        p_mal = probs[:, CLASS_NAMES.index("malignant")]
        adapted_c = adapted_cut((ids, names, p_mal, groups), source, source_p, cfg.target_sensitivity)
    cut_args = (fold_dir, request.fit, request.own_data, cfg.target_sensitivity, adapted_c)
    cuts, cut_info = malignancy_cut(records, probs, *cut_args)
    result.update(malignancy_report(names, probs, CLASS_NAMES, groups, cuts))
    result.update(malignancy_threshold=cut_info["threshold"], malignancy_cut=cut_info)
    result.update(cls_breakdowns(records, labels, probs, cuts))
    breakdown_plot(result, "malignant_auc", out_dir / "plots" / "by_site_and_scanner.png", "AUC, malignant vs benign")
    return result
