"""``train.py --segmenter``: each fold's lesion classifier diagnoses whole images with a segmentation run.

After a fold of a lesion classifier (``--crop lesion``) is trained, its best weights and the segmenter
(:func:`segmenter_dir`: ``--segmenter`` with ``{fold}`` replaced by the fold) score the diagnosis
(:func:`evaluation.diagnosis.evaluate_diagnosis`) on every image of the fold's validation cases, normal
ones included, fitting the diagnosis' malignancy cut there, and then on every image of each ``--external``
dataset at that cut: what ``evaluate.py --run FOLD_RUN --segmenter SEG`` writes, in the same folders
(``<fold>/eval/diagnosis-<segmenter>-<dataset>-<split>/``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.atomic import write_json
from core.classes import CLASS_NAMES
from core.errors import OptionError
from data.splits import fold_ids
from evaluation.diagnosis import DIAGNOSIS_KEYS, evaluate_diagnosis, output_dir
from evaluation.run_files import load_run_model, resolve_run
from evaluation.summary import format_metrics
from reports.html import write_report

if TYPE_CHECKING:
    from config.train import TrainConfig
    from training.data import PreparedData


def segmenter_dir(cfg: TrainConfig, fold: int) -> Path:
    """The segmentation run (or fold folder) that diagnoses with ``fold``'s classifier."""
    return Path(cfg.segmenter.replace("{fold}", str(fold)))


def check_segmenter(cfg: TrainConfig, folds: Sequence[int]) -> None:
    """Refuse, before any training, a ``--segmenter`` that cannot diagnose with this run.

    Raises:
        OptionError: If the run is not a lesion classifier, or a fold's segmenter is not a segmentation run.
        FileNotFoundError: If a fold's segmenter is not a trained run (or fold folder).
    """
    if not cfg.segmenter:
        return
    if cfg.crop != "lesion":
        raise OptionError(
            f"`--segmenter` diagnoses with a lesion classifier: it needs --crop lesion. Received: {cfg.crop}"
        )
    for k in folds:
        seg_cfg, _ = resolve_run(segmenter_dir(cfg, k))
        if seg_cfg.task != "seg":
            raise OptionError(
                f"`--segmenter` must be a segmentation run. Received: {segmenter_dir(cfg, k)} ({seg_cfg.task})"
            )


def diagnose_fold(cfg: TrainConfig, data: PreparedData, fold: int, fold_dir: Path) -> dict[str, dict[str, Any]]:
    """Score the diagnosis of ``fold``'s best classifier on its validation fold, then on each external dataset.

    Returns:
        ``<dataset>-<split>`` (``own-val``, ``<external>-all``) -> its main figures (:data:`DIAGNOSIS_KEYS`
        with their intervals), ``n_images`` and the folder.
    """
    seg_cfg, seg_file = resolve_run(segmenter_dir(cfg, fold))
    seg = (load_run_model(seg_file), seg_cfg, seg_file.parent.parent)
    lesion = (load_run_model(fold_dir / "weights" / "best.keras"), cfg, fold_dir)
    own = [data.cases[i] for i in fold_ids(data.splits, fold)[1] if i in data.cases]
    if cfg.max_samples:  # the cases evaluate.py --segmenter scores for such a run
        own = own[: cfg.max_samples]
    sets = [("own-val", own, True, None)]
    sets += [(f"{e.name}-all", list(e.every), False, e) for e in data.externals]
    out = {}
    for label, records, is_own, ext in sets:
        where = output_dir(fold_dir, segmenter_dir(cfg, fold), label)
        print(f"fold {fold}: diagnosis with {seg[2]} on {label} ({len(records)} images of {list(CLASS_NAMES)})")
        result = evaluate_diagnosis(seg, lesion, records, where, own_data=is_own, fit_cut=is_own)
        result.update(split="val" if is_own else "all")
        if ext is not None:
            result.update(data_dir=str(ext.path), excluded=ext.excluded)
        write_json(where / "metrics.json", result)
        write_report(where)
        print(f"fold {fold}: diagnosis on {label}: {format_metrics(result, DIAGNOSIS_KEYS)}")
        summary = {k: result[k] for k in DIAGNOSIS_KEYS if k in result}
        summary.update({f"{k}_ci95": result[f"{k}_ci95"] for k in DIAGNOSIS_KEYS if f"{k}_ci95" in result})
        out[label] = {**summary, "n_images": len(records), "dir": str(where)}
    return out
