"""External validation: a trained model scored on datasets from other sites.

Each external dataset is inspected on its own (:func:`data.report.analyze_dataset`):
every file is validated before training starts, and its own exact duplicates filed
under two classes decide what is left out of it (never the training data's). Each
fold's best model is then scored on it exactly as on the validation fold, with what
the run fitted on its validation fold (the lesion gate, the malignancy threshold),
and the result is written to ``<fold>/external/<dataset>/metrics.json`` with plots.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.atomic import write_json
from core.errors import DataError
from data.discover import Case, check_lesion_masks
from data.report import InspectOptions, analyze_dataset
from data.sources import Source, parse_sources
from evaluation.base import EvalRequest, Evaluator
from reports.html import write_report

if TYPE_CHECKING:
    import keras

    from config.train import TrainConfig

EXTERNAL_DIR = "external"


@dataclass(frozen=True)
class ExternalData:
    """One external dataset, ready to score.

    Attributes:
        name: Its name (``NAME=PATH``'s name, else :func:`data.sources.dataset_name`): the folder
            its results go to.
        path: The folder or manifest.
        records: The cases scored: the run's classes, less ``excluded``.
        excluded: Case id -> why the dataset's own inspection left it out.
        every: Every case of every class its inspection kept, whole frames with or without a mask (what a
            diagnosis scores: :mod:`training.diagnosis`).
    """

    name: str
    path: Path
    records: tuple[Case, ...]
    excluded: dict[str, str]
    every: tuple[Case, ...] = ()


def load_external(
    source: Source, classes: Sequence[str], task: str = "cls", leave_out_unmasked: bool = False, crop: str = "frame"
) -> ExternalData:
    """Inspect one external dataset and pick its cases of ``classes``.

    For a ``seg`` or ``joint`` run, and a lesion classifier (``crop="lesion"``), every lesion image needs its
    mask (:func:`data.discover.check_lesion_masks`);
    with ``leave_out_unmasked`` those without one are left out and listed in ``excluded``.

    Raises:
        FileNotFoundError: If the dataset does not exist.
        DataError: If it has problems, lesion images without masks, or no case of ``classes``.
        ValueError: If a ``seg`` or ``joint`` run is scored on a dataset without masks.
    """
    analysis = analyze_dataset([source], InspectOptions(folds=2))
    excluded = dict(analysis.excluded)
    every = tuple(c for i, c in analysis.cases.items() if i not in excluded)
    records = [c for c in every if c.label in classes]
    records, unmasked = check_lesion_masks(records, task, leave_out_unmasked, f"external dataset {source.path}", crop)
    excluded.update(dict.fromkeys(unmasked, "lesion image without a mask (--leave-out-unmasked)"))
    if not records:
        raise DataError(f"external dataset {source.path} has no case of the run's classes {list(classes)}")
    return ExternalData(source.name, source.path, tuple(records), excluded, every)


def load_externals(
    specs: Sequence[str],
    classes: Sequence[str],
    task: str = "cls",
    leave_out_unmasked: bool = False,
    crop: str = "frame",
) -> list[ExternalData]:
    """:func:`load_external` of every ``--external`` value (``PATH`` or ``NAME=PATH``)."""
    sources = parse_sources(specs) if specs else []
    return [load_external(s, classes, task, leave_out_unmasked, crop) for s in sources]


def external_dir(fold_dir: Path, name: str) -> Path:
    """Where one external dataset's results of a fold go."""
    return Path(fold_dir) / EXTERNAL_DIR / name


def evaluate_external(
    evaluate: Evaluator,
    model: keras.Model,
    cfg: TrainConfig,
    fold_dir: Path,
    externals: Sequence[ExternalData],
    keys: Sequence[str],
) -> dict[str, dict[str, Any]]:
    """Score ``model`` on every external dataset and write each one's ``metrics.json`` and ``report.html``.

    Args:
        evaluate: The task's evaluator (:func:`evaluation.tasks.evaluator`).
        model: The fold's best model.
        cfg: The run's config.
        fold_dir: The fold's folder (holds what was fitted on the validation fold).
        externals: From :func:`load_externals`.
        keys: The metrics to repeat in the returned summary.

    Returns:
        Dataset name -> its main metrics (``keys`` and their intervals, ``n_images``, the folder).
    """
    out: dict[str, dict[str, Any]] = {}
    for ext in externals:
        where = external_dir(fold_dir, ext.name)
        print(f"external validation on {ext.name} ({ext.path}): {len(ext.records)} cases")
        result = evaluate(model, cfg, EvalRequest(list(ext.records), where, fold_dir=fold_dir, own_data=False))
        result.update(data_dir=str(ext.path), excluded=ext.excluded, split="all")
        write_json(where / "metrics.json", result)
        write_report(where)  # the site's own page, beside the run's (which has every site)
        summary = {k: result[k] for k in keys if k in result}
        summary.update({f"{k}_ci95": result[f"{k}_ci95"] for k in keys if f"{k}_ci95" in result})
        summary.update(n_images=result.get("n_images"), dir=str(where), shift=result.get("shift"))
        if result.get("shift"):
            print(f"external {ext.name}: shift: {result['shift']['line']}")
        out[ext.name] = summary
    return out
