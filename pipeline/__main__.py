"""Command line of the input pipeline.

Usage:
    python -m pipeline preview                                  # built-in synthetic data
    python -m pipeline preview --data-dir ../shared/datasets/Dataset_BUSI_with_GT --augment strong
    python -m pipeline preview --task cls --augment light --img-size 224 --out preview_cls.png
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cli import exit_on_user_error
from data.discover import discover
from data.synthetic import resolve_data_dir
from pipeline.augment import PRESETS
from pipeline.config import IMG_SIZE, PipelineConfig


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Build the parser and parse ``argv``."""
    p = argparse.ArgumentParser(
        prog="python -m pipeline",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("preview", help="save a grid of augmented images with mask outlines")
    v.add_argument("--data-dir", help="BUSI-layout folder or manifest .csv (default: built-in synthetic data)")
    v.add_argument(
        "--task",
        choices=["seg", "cls"],
        default="seg",
        help="seg draws mask outlines (default seg)",
    )
    v.add_argument(
        "--augment",
        choices=list(PRESETS),
        default="strong",
        help="augmentation preset (default strong)",
    )
    v.add_argument(
        "--img-size", type=int, default=IMG_SIZE, help=f"side of the model input in pixels (default {IMG_SIZE})"
    )
    v.add_argument("--seed", type=int, default=0, help="seed of sampling and augmentation (default 0)")
    v.add_argument("--out", default="preview.png", help="PNG file to write (default preview.png)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (2 on bad data, shown without traceback)."""
    args = parse_args(argv)

    def work() -> None:
        from pipeline.preview import save_preview  # late: imports TensorFlow

        data_dir = resolve_data_dir(args.data_dir)
        cases = list(discover(data_dir).values())
        cfg = PipelineConfig(img_size=args.img_size, augment=args.augment, seed=args.seed, channels=3)
        print(f"Wrote {save_preview(cases, args.task, cfg, args.out)}")

    return exit_on_user_error(work)


if __name__ == "__main__":
    sys.exit(main())
