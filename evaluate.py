"""Evaluate a trained run again: its validation split, or another dataset (external validation).

Usage:
    python evaluate.py --run runs/seg/exp
    python evaluate.py --run runs/seg/exp --split all
    python evaluate.py --run runs/seg/exp --data-dir ../shared/datasets/Dataset_BUSI_with_GT --split all
    python evaluate.py --run runs/cls/exp --data-dir other_site/ --split all
    python evaluate.py --run runs/cls/exp --data-dir ../shared/datasets/BUS-BRA/manifest.csv
    python evaluate.py --run runs/seg/exp --tta
    python evaluate.py --run runs/seg/exp --postprocess largest

Works for segmentation, classification and joint runs alike (a joint run's
metrics.json holds both sets, "seg" and "cls", with their plots in seg/ and cls/). A segmentation run's
lesion gate (lesion_gate.json) is applied: on the run's own validation fold with
the cross-fitted gates training scored it with, on other data with the gate
fitted on the whole fold; metrics.json keeps the ungated figures under "ungated". A
classification run's temperature (temperature.json) calibrates its probabilities the
same way: cross-fitted halves on its own validation fold, the fold's temperature on
other data; metrics.json gives "calibration" (ECE, Brier score before and after). Another
dataset is inspected on its own first: its own exact duplicates filed under two
classes are left out of it (the run's exclusions concern the run's data only).
Writes <run>/eval/<dataset>-<split>/metrics.json and plots/ (classification also
predictions.csv; for a --fold all run, one folder per fold), and prints the
main metrics. <dataset> is the folder's name, or a manifest's (a manifest.csv
is named by its folder: BUS-BRA/manifest.csv -> BUS-BRA); NAME=PATH names it.
--tta (flip test-time augmentation) combines each prediction with the mirrored
image's by predict.py's rule (a lesion only where the gate keeps it in both views;
each view's probabilities calibrated, then averaged) and writes <dataset>-<split>-tta
instead. --postprocess largest (segmentation, joint) keeps the largest lesion of each
gated mask, fills its holes, and writes <dataset>-<split>[-tta]-largest; metrics.json
counts the lesions left in each mask ("lesions").

--segmenter SEG_RUN with a lesion classifier's run (--crop lesion) scores the diagnosis: the
segmenter's own masks (gated, --postprocess) say where the lesions are and whether there is one,
the classifier reads each lesion, and every image of every class is scored (evaluation/diagnosis.py).
On the classifier's validation fold it fits the diagnosis' malignancy cut (cross-fitted); another
dataset is scored at that cut, fitted first if it is not yet. Writes
<run>/eval/diagnosis-<segmenter>-<dataset>-<split>[-tta][-largest]/, with diagnosis.json (each
image's lesions); each --postprocess has its own cut.
    python evaluate.py --run runs/cls/lesion --segmenter runs/seg/exp
    python evaluate.py --run runs/cls/lesion --segmenter runs/seg/exp --data-dir ../shared/datasets/BUS-BRA/manifest.csv
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cli import POSTPROCESS_HELP, exit_on_user_error
from core.atomic import write_json
from core.errors import DataError, MissingFileError, OptionError
from models.options import POSTPROCESS
from reports.html import write_report


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Build the parser and parse ``argv``."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    p.add_argument("--run", required=True, help="run folder written by train.py")
    p.add_argument("--data-dir", default="", help="another dataset, PATH or NAME=PATH (default: the run's own data)")
    p.add_argument(
        "--split",
        choices=["val", "all"],
        default="",
        help="val: the run's validation fold (own data only); all: every case (default: val on own data, all on other)",
    )
    p.add_argument(
        "--tta",
        action="store_true",
        help="average each prediction with the left-right mirrored image's (writes <dataset>-<split>-tta)",
    )
    p.add_argument("--postprocess", choices=POSTPROCESS, default="none", help=POSTPROCESS_HELP)
    p.add_argument(
        "--segmenter",
        default="",
        help="with a lesion classifier's run (--crop lesion): a segmentation run (or one fold of it) whose masks "
        "place the lesions; scores the diagnosis of every image",
    )
    return p.parse_args(argv)


def dataset_cases(args: argparse.Namespace, cfg: Any, splits: dict[str, Any], split: str) -> dict[str, Any]:
    """The cases to score: the run's own data (less its exclusions), or another dataset inspected on its own.

    Returns:
        ``name`` (of the output folder), ``data_dir``, ``cases`` by id, ``excluded`` ids and, for another
        dataset, ``external``: why its own inspection left cases out.
    """
    from data.sources import discover_sources, parse_sources, resolve_sources
    from evaluation.external import load_external

    if not args.data_dir:
        sources = resolve_sources(cfg.data_dir)
        data_dir = " ".join(str(s.path) for s in sources)
        return dict(name=f"own-{split}", data_dir=data_dir, cases=discover_sources(sources),
                    excluded=set(splits["excluded"]), external=None)  # fmt: skip
    ext = load_external(parse_sources([args.data_dir])[0], cfg.classes, cfg.task, cfg.leave_out_unmasked, cfg.crop)
    return dict(name=f"{ext.name}-{split}", data_dir=str(ext.path), cases={c.case_id: c for c in ext.records},
                excluded=set(ext.excluded), external=ext.excluded)  # fmt: skip


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate as ``args`` say; return the metrics of each evaluated fold."""
    import keras

    from config.train import TrainConfig
    from data.discover import check_lesion_masks
    from data.splits import fold_ids, load_splits
    from evaluation.base import EvalRequest
    from evaluation.run_files import load_run_model
    from evaluation.summary import format_metrics
    from evaluation.support import few_cases
    from evaluation.tasks import evaluator, summary_keys

    run_dir = Path(args.run)
    if not (run_dir / "config.json").is_file():
        raise MissingFileError(f"`--run` must be a run folder with config.json. Received: {run_dir}")
    cfg = TrainConfig.load(run_dir / "config.json")
    if args.segmenter:
        return diagnose_main(args, cfg, run_dir)
    if cfg.task == "cls" and args.postprocess != "none":
        raise OptionError(f"`--postprocess {args.postprocess}` is for segmentation runs; {run_dir} is {cfg.task}")
    suffix = ("-tta" if args.tta else "") + ("" if args.postprocess == "none" else f"-{args.postprocess}")
    own = not args.data_dir
    split = args.split or ("val" if own else "all")
    if split == "val" and not own:
        raise OptionError("`--split val` needs the run's own data; another dataset is evaluated with --split all")
    splits = load_splits(run_dir / "splits.json")
    data = dataset_cases(args, cfg, splits, split)
    n_folds = len(splits["folds"])
    fold_dirs = [(cfg.fold, run_dir)] if cfg.fold != -1 else [(k, run_dir / f"fold{k}") for k in range(n_folds)]
    results = {}
    for k, fold_dir in fold_dirs:
        cases = data["cases"]
        ids = fold_ids(splits, k)[1] if split == "val" else [i for i in cases if i not in data["excluded"]]
        records = [cases[i] for i in ids if i in cases and cases[i].label in cfg.classes]
        records, _ = check_lesion_masks(records, cfg.task, cfg.leave_out_unmasked, data["data_dir"], cfg.crop)
        if own and split == "val" and cfg.max_samples:  # the same cases the run validated on
            records = records[: cfg.max_samples]
        if not records:
            raise DataError(f"no cases of classes {list(cfg.classes)} to evaluate in {data['data_dir']}")
        model = load_run_model(fold_dir / "weights" / "best.keras")
        out = fold_dir / "eval" / f"{data['name']}{suffix}"
        request = EvalRequest(records, out, fold_dir=fold_dir, own_data=own, tta=args.tta, postprocess=args.postprocess)
        result = evaluator(cfg.task)(model, cfg, request)
        result.update(fold=k, data_dir=data["data_dir"], split=split)
        if few_cases(len(records)):
            result["few_cases"] = few_cases(len(records))
        if not own:
            result["excluded"] = data["external"]
        write_json(out / "metrics.json", result)
        figures = format_metrics(result, summary_keys(cfg.task))
        print(f"fold {k} on {data['data_dir']} ({split}, {len(records)} cases): {figures}")
        if result.get("shift"):
            print(f"shift: {result['shift']['line']}")
        print(f"Wrote {out}/metrics.json, {out}/plots/ and {write_report(out)}")
        results[f"fold{k}"] = result
        keras.backend.clear_session()
    return results


def diagnose_main(args: argparse.Namespace, cfg: Any, run_dir: Path) -> dict[str, Any]:
    """``--segmenter``: score the diagnosis of the segmenter and the lesion classifier ``run_dir`` on every image."""
    import keras

    from core.classes import CLASS_NAMES
    from data.splits import fold_ids, load_splits
    from evaluation.diagnosis import DIAGNOSIS_KEYS, cut_file, evaluate_diagnosis, output_dir
    from evaluation.run_files import load_run_model, resolve_run
    from evaluation.summary import format_metrics

    if cfg.crop != "lesion":
        raise OptionError(f"`--segmenter` needs a lesion classifier's run (--crop lesion); {run_dir} reads frames")
    seg_cfg, seg_file = resolve_run(args.segmenter)
    if seg_cfg.task != "seg":
        raise OptionError(f"`--segmenter` must be a segmentation run. Received: {args.segmenter} ({seg_cfg.task})")
    cls_cfg, cls_file = resolve_run(run_dir)
    seg = (load_run_model(seg_file), seg_cfg, seg_file.parent.parent)
    lesion = (load_run_model(cls_file), cls_cfg, cls_file.parent.parent)
    splits, own = load_splits(run_dir / "splits.json"), not args.data_dir
    if not own and not cut_file(lesion[2], seg[2], args.postprocess).is_file():
        print("fitting the diagnosis' malignancy cut on the lesion classifier's validation fold first")
        diagnose_main(argparse.Namespace(**{**vars(args), "data_dir": "", "split": "val"}), cfg, run_dir)
    split = args.split or ("val" if own else "all")
    full = replace_classes(cfg, CLASS_NAMES)  # the diagnosis answers for every class, normal too
    data = dataset_cases(args, full, splits, split)
    ids = fold_ids(splits, cfg.fold)[1] if split == "val" else [i for i in data["cases"] if i not in data["excluded"]]
    records = [data["cases"][i] for i in ids if i in data["cases"]]
    if own and split == "val" and cfg.max_samples:
        records = records[: cfg.max_samples]
    out = output_dir(lesion[2], Path(args.segmenter), data["name"], args.tta, args.postprocess)
    fit = own and split == "val"
    result = evaluate_diagnosis(seg, lesion, records, out, own, fit, args.tta, args.postprocess)
    result.update(data_dir=data["data_dir"], split=split, excluded=data["external"])
    write_json(out / "metrics.json", result)
    print(f"diagnosis on {data['data_dir']} ({split}, {len(records)} cases): {format_metrics(result, DIAGNOSIS_KEYS)}")
    print(f"Wrote {out}/metrics.json, diagnosis.json, predictions.csv, plots/ and {write_report(out)}")
    keras.backend.clear_session()
    return {f"fold{cfg.fold}": result}


def replace_classes(cfg: Any, classes: Sequence[str]) -> Any:
    """``cfg`` with ``classes`` and whole frames (no mask needed): the cases a diagnosis scores."""
    from dataclasses import replace

    return replace(cfg, classes=tuple(classes), crop="frame")


if __name__ == "__main__":
    sys.exit(exit_on_user_error(lambda: main(parse_args())))
