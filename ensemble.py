"""Combine classification runs ("ensemble boosting"): soft voting, F1-weighted voting, stacking.

Usage:
    python ensemble.py --runs runs/cls/effnet runs/cls/resnet --method soft
    python ensemble.py --runs runs/cls/cv-effnet runs/cls/cv-resnet runs/cls/cv-se --method stack

Members are the runs' validation predictions (predictions.csv), so the runs
must share splits and folds. `stack` needs cross-validation runs
(`train.py --fold all`): a HistGradientBoostingClassifier is fitted on the
out-of-fold member probabilities of the other folds and predicts each fold.
Writes <out>/metrics.json (every member and the ensemble), predictions.csv,
plots/ (ensemble) and members/<run>/plots/, and prints a table.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cli import exit_on_user_error
from core.atomic import write_json
from core.errors import OptionError


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Build the parser and parse ``argv``."""
    from evaluation.ensemble import METHODS

    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    p.add_argument("--runs", nargs="+", required=True, help="classification run folders (at least two)")
    p.add_argument("--method", choices=METHODS, default="soft", help="soft, weighted (by val macro F1) or stack")
    p.add_argument("--out", default="", help="output folder (default: runs/ensemble/<method>, incremented)")
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> dict[str, Any]:
    """Build the ensemble as ``args`` say; return its metrics and the members'."""
    from core.classes import CLASS_NAMES
    from evaluation.cls import report_cls, run_images
    from evaluation.ensemble import align, combine, load_member
    from evaluation.run_files import increment_run_dir
    from metrics.classification import classification_report
    from reports.plots import confident_wrong_grid, confusion_plot, roc_plot

    if len(args.runs) < 2:
        raise OptionError(f"`--runs` needs at least two runs. Received: {args.runs}")
    members = align([load_member(r) for r in args.runs])
    images = run_images(Path(args.runs[0]), members[0].ids)
    out = Path(args.out) if args.out else increment_run_dir("runs", "ensemble", args.method)
    probs, fitted = combine(members, args.method)
    result: dict[str, Any] = {"method": args.method, "runs": [str(r) for r in args.runs], **fitted, "members": {}}
    summary = [("member", "accuracy", "macro_f1", "macro_auc")]
    for m in members:
        rep = classification_report(m.labels, m.probs, CLASS_NAMES)
        plots = out / "members" / m.name / "plots"
        confusion_plot(rep, CLASS_NAMES, plots / "confusion_matrix.png")
        roc_plot(m.labels, m.probs, CLASS_NAMES, plots / "roc.png")
        confident_wrong_grid(images, m.labels, m.probs, m.ids, CLASS_NAMES, plots / "confident_wrong.png")
        result["members"][m.name] = rep
        summary.append((m.name, rep["accuracy"], rep["macro_f1"], rep["macro_auc"]))
    print(f"ensemble ({args.method}) of {len(members)} runs on {len(members[0].ids)} validation cases:")
    result["ensemble"] = report_cls(members[0].ids, members[0].labels, probs, out, images)
    e = result["ensemble"]
    summary.append((f"ensemble ({args.method})", e["accuracy"], e["macro_f1"], e["macro_auc"]))
    for row in summary:
        print(f"{row[0]:<28}" + "".join(f"{v:>12}" if isinstance(v, str) else f"{v:>12.4f}" for v in row[1:]))
    write_json(out / "metrics.json", result)
    print(f"Wrote {out}: metrics.json, predictions.csv, plots/, members/")
    result["out"] = str(out)
    return result


if __name__ == "__main__":
    sys.exit(exit_on_user_error(lambda: main(parse_args())))
