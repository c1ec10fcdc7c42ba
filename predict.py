"""Predict images with a trained run, an exported SavedModel, or a TF Serving server.

Usage:
    python predict.py --model runs/seg/exp --source ../shared/datasets/Dataset_BUSI_with_GT/malignant
    python predict.py --model export/unet --source scans/ --pixel-spacing 0.08 --tta
    python predict.py --model runs/seg/exp --source scans/ --postprocess largest
    python predict.py --model runs/cls/exp --source scans/ --explain
    python predict.py --model runs/joint/exp --source scans/ --explain
    python predict.py --model runs/cls/exp --source "images/**/*.png" --out runs/predict/cls-site2
    python predict.py --model runs/seg/exp --source archive/ --no-overlays
    python predict.py --server http://localhost:8501/v1/models/unet --source scan.png

Writes <out>/predictions.csv and predictions.json (one row per file: class and
probabilities for classifiers; mask path and lesion measurements for
segmenters; all of them for a joint model), masks/<name>_mask.png at each image's original size and
overlays/<name>.png. A file that cannot be read or predicted gets an `error`
and the others still complete; the exit status is the number of such files
(at most 255), 0 when all succeeded. --source folders give their images (not
recursive), leaving out ground-truth *_mask.png files. A segmentation run's
lesion gate (or the one baked into an export) decides when an image gets an
empty mask ("no lesion": lesion_area_fraction 0, no measurements).
--postprocess largest keeps the largest lesion of each mask and fills its holes
(after TTA's averaging, at the model's resolution); an export made with
`export.py --postprocess largest` does so in its graph, to each view it returns.
--explain (a classifier's, joint model's or diagnosis' run folders) also writes explain/<name>.png: the
Grad-CAM heat map of the predicted class over the image, with class and probability.
--segmenter SEG_RUN with a lesion classifier's run (--crop lesion) as --model diagnoses each image
(serving/diagnosis.py): the segmenter's mask, each lesion's box and P(malignant) (column `lesions`,
boxes drawn on the overlay), and the class: normal without a lesion, else by the most suspicious
one; with --postprocess largest, of the segmenter's post-processed mask. With --tta both models read
each image (and each crop) and its mirror image, as evaluate.py --tta scores them; --explain draws
the lesion classifier's Grad-CAM of each lesion's class inside its crop. An export of the diagnosis
(export.py --segmenter) gives the same from --model EXPORT_DIR (--tta: its serving_tta signature).
    python predict.py --model runs/cls/lesion --segmenter runs/seg/exp --source scans/ --tta --explain
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from cli import POSTPROCESS_HELP, exit_on_user_error, with_overrides
from core.errors import OptionError
from models.options import POSTPROCESS


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Build the parser and parse ``argv``."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    p.add_argument("--model", default="", help="run folder (train.py) or export folder (export.py; latest version)")
    p.add_argument("--server", default="", help="TF Serving model URL, e.g. http://localhost:8501/v1/models/unet")
    p.add_argument("--source", nargs="+", required=True, help="image files, folders or glob patterns")
    p.add_argument("--out", default="", help="output folder (default: runs/predict/exp, incremented)")
    p.add_argument("--tta", action="store_true", help="average with the horizontally flipped image")
    p.add_argument("--postprocess", choices=POSTPROCESS, default="none", help=POSTPROCESS_HELP)
    p.add_argument(
        "--explain",
        action="store_true",
        help="classifier, joint or diagnosis (run folders): Grad-CAM heat maps in explain/<name>.png",
    )
    p.add_argument("--pixel-spacing", type=float, default=None, help="millimetres per pixel; adds mm measurements")
    p.add_argument("--batch-size", type=int, default=8, help="images per model call")
    p.add_argument(
        "--overlays",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write overlays/ (--no-overlays: masks and the tables only, for archives)",
    )
    p.add_argument("--weights", choices=["best", "last"], default="best", help="checkpoint of a run folder")
    p.add_argument(
        "--segmenter", default="", help="with a lesion classifier's run as --model: the segmentation run that diagnoses"
    )
    return p.parse_args(argv)


def main(args: argparse.Namespace):
    """Predict as ``args`` say; return the :class:`~inference.predict.PredictResult`."""
    from data.shift import summary_line
    from evaluation.run_files import increment_run_dir
    from inference.backends import open_backend
    from inference.predict import predict_files
    from inference.sources import collect_sources

    if args.pixel_spacing is not None and not args.pixel_spacing > 0:
        raise OptionError(f"`--pixel-spacing` must be positive millimetres. Received: {args.pixel_spacing}")
    files, skipped = collect_sources(args.source)
    backend = open_backend(args.model, args.server, args.weights, args.segmenter, args.postprocess, args.tta)
    explainer = None
    if args.explain:
        from inference.backends import DiagnosisBackend, RunBackend
        from inference.explain import Explainer, LesionExplainer

        if not isinstance(backend, (RunBackend, DiagnosisBackend)):
            raise OptionError("`--explain` needs a run folder as --model (Grad-CAM needs the Keras model)")
        kind = LesionExplainer if isinstance(backend, DiagnosisBackend) else Explainer
        explainer = kind(args.model, args.weights)
    out = Path(args.out) if args.out else increment_run_dir("runs", "predict", "exp")
    print(
        f"Predicting {len(files)} image(s) with {backend.description}"
        + (f" (left out {skipped} *_mask file(s))" if skipped else "")
        + (", flip TTA" if args.tta else "")
        + (f", post-processing {args.postprocess}" if args.postprocess != "none" else "")
    )
    result = predict_files(
        backend, files, out, args.tta, args.pixel_spacing, args.batch_size, postprocess=args.postprocess,
        explainer=explainer, overlays=args.overlays,
    )  # fmt: skip
    for r in result.rows:
        if r["error"]:
            print(f"error: {r['file']}: {r['error']}", file=sys.stderr)
    print(f"{len(files) - result.failed} predicted, {result.failed} failed")
    if result.shift is not None:
        print(f"shift: {summary_line(result.shift)} (column `shift` of predictions.csv)")
    parts = ["masks/"] * (result.task != "cls") + ["overlays/"] * args.overlays + ["explain/"] * args.explain
    extra = ", ".join(parts)
    print(f"Wrote {out}/predictions.csv, predictions.json, {extra}")
    return result


def run(source: str | Sequence[str], **overrides):
    """Predict from Python, e.g. ``run("scans/", model="runs/seg/exp", out="pred")``."""
    sources = [source] if isinstance(source, (str, Path)) else list(source)
    return main(with_overrides(parse_args(["--source", *map(str, sources)]), overrides))


if __name__ == "__main__":
    from serving.rest import ServingError

    sys.exit(exit_on_user_error(lambda: min(main(parse_args()).failed, 255), also=(ServingError,)))
