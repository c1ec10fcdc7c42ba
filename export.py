"""Export a trained run as a TensorFlow Serving model version.

Usage:
    python export.py --run runs/seg/exp
    python export.py --run runs/cls/exp --out export --name busi_cls
    python export.py --run runs/seg/cv/fold0 --name unet --version 3

Writes export/<name>/<version>/ (saved_model.pb, variables/, assets.extra/ with
the warmup requests) and rewrites export/models.config to list every exported
model. The version is the next free number unless --version is given; an
existing version is never overwritten. Signatures: serving_default (encoded
PNG/JPEG/BMP bytes, decoded and resized in the graph) and serving_preprocessed
(float32 pixels in [0, 255] at the model's input size). A segmentation export
applies the run's lesion gate, and with --postprocess largest keeps only the
largest lesion of each mask with its holes filled (recorded in export.json).

With --segmenter SEG_RUN, a lesion classifier's run (--crop lesion) is exported with that segmenter
as one diagnosis (serving/diagnosis.py): encoded bytes in; the gated mask, each lesion's box and
P(malignant), and the image's class probabilities out, every step in the graph; its serving_tta
signature does the same with flip test-time augmentation of both models (predict.py --tta). The
diagnosis' cut is included when evaluate.py --segmenter fitted one for the pair.
    python export.py --run runs/cls/lesion --segmenter runs/seg/exp --name diagnosis
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
    p.add_argument("--run", required=True, help="run folder written by train.py (or one fold of a --fold all run)")
    p.add_argument("--out", default="export", help="export root holding <name>/<version>/ (default: export)")
    p.add_argument("--name", default="", help="served model name (default: the run's model, e.g. unet)")
    p.add_argument("--version", type=int, default=None, help="version number (default: the next free one)")
    p.add_argument("--weights", choices=["best", "last"], default="best", help="which checkpoint to export")
    p.add_argument("--postprocess", choices=POSTPROCESS, default="none", help=POSTPROCESS_HELP)
    p.add_argument(
        "--segmenter", default="", help="with a lesion classifier's run: the segmentation run of the diagnosis"
    )
    return p.parse_args(argv)


def main(args: argparse.Namespace):
    """Export as ``args`` say; return the :class:`~serving.export.ExportResult`."""
    from evaluation.run_files import load_description, load_inference_model, resolve_run
    from models.postprocess import NO_GATE
    from serving.export import export_model, spec_from_config

    cfg, weights = resolve_run(args.run, args.weights)
    if args.segmenter:
        return export_diagnosis_main(args, cfg, weights)
    if cfg.task == "cls" and args.postprocess != "none":
        raise OptionError(f"`--postprocess {args.postprocess}` is for segmentation runs; {args.run} is {cfg.task}")
    name = args.name or cfg.model
    print(f"Exporting {weights} ({cfg.task}, {cfg.model}, {cfg.img_size}x{cfg.img_size}x{cfg.channels}) as {name!r}")
    model = load_inference_model(weights)
    # The run's lesion gate was fitted for its best weights; the last ones go ungated.
    spec = spec_from_config(cfg, weights.parent.parent if weights.stem == "best" else None, args.postprocess)
    if spec.gate != NO_GATE:
        print(f"Lesion gate of the run: {spec.gate}")
    if spec.postprocess != "none":
        print(f"Post-processing in the graph: {spec.postprocess}")
    described = load_description(weights.parent.parent)
    result = export_model(model, spec, args.out, name, args.version, source=str(weights), image_description=described)
    print(f"Wrote {result.path} (version {result.version}) and {result.models_config}")
    print(
        "Serve it with:\n  docker run --rm -p 8501:8501 -p 8500:8500 "
        f'-v "{Path(args.out).resolve()}:/models" tensorflow/serving '
        "--model_config_file=/models/models.config"
    )
    return result


def export_diagnosis_main(args: argparse.Namespace, cfg, weights: Path):
    """``--segmenter``: export the segmenter and the lesion classifier of ``args.run`` as one diagnosis."""
    from evaluation.run_files import load_inference_model, resolve_run
    from serving.diagnosis import diagnosis_spec, export_diagnosis

    seg_cfg, seg_weights = resolve_run(args.segmenter, args.weights)
    spec = diagnosis_spec(seg_cfg, seg_weights.parent.parent, cfg, weights.parent.parent, args.postprocess)
    name = args.name or "diagnosis"
    cut = (
        "no cut (run evaluate.py --segmenter first)"
        if spec.malignancy_cut is None
        else f"cut {spec.malignancy_cut:.3f}"
    )
    print(f"Exporting the diagnosis of {seg_weights} and {weights} as {name!r} ({cut})")
    models = load_inference_model(seg_weights), load_inference_model(weights)
    result = export_diagnosis(*models, spec, args.out, name, args.version, source=f"{seg_weights} + {weights}")
    print(f"Wrote {result.path} (version {result.version}) and {result.models_config}")
    return result


def run(run: str, **overrides):
    """Export from Python, e.g. ``run("runs/seg/exp", out="export")``; flags' defaults apply."""
    return main(with_overrides(parse_args(["--run", str(run)]), overrides))


if __name__ == "__main__":
    sys.exit(exit_on_user_error(lambda: main(parse_args())))
