"""Our default U-Net against MONAI's BasicUNet, fold by fold, from the two benchmarks' saved results.

Pairs each row of ``seg_busi.json`` for the default U-Net (depth 4, constant learning rate,
float32) with the row of ``monai_basicunet.json`` for the same fold, seed and malloc setting,
and writes a table per malloc setting with the paired differences in last-epoch Dice, the
best-epoch summary and the speed ratio. ``seg_busi.py`` and ``monai_basicunet.py`` call
:func:`update` after every run, so the table follows the results; run this script to
re-render it by hand.

Usage:
    python benchmarks/seg_vs_basicunet.py
    python benchmarks/seg_vs_basicunet.py --seed 1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from _common import REPO, VARIANTS, mean_sd, write_section

SECTION = "seg_vs_basicunet"
RESULTS = REPO / "benchmarks" / "results"
SEG_JSON = RESULTS / "seg_busi.json"
BASIC_JSON = RESULTS / "monai_basicunet.json"
OURS = {"model": "unet", "depth": 4, "schedule": "constant", "precision": "off"}
"""The configuration of ``seg_busi.json`` that the issue's target is about: the default U-Net in float32."""


def pairs(ours: list[dict], basic: list[dict], seed: int, variant: str) -> list[tuple[dict, dict]]:
    """``(our row, BasicUNet row)`` for every fold both measured with ``seed`` under ``variant``, by fold."""
    mine = {
        r["fold"]: r
        for r in ours
        if r["seed"] == seed and r["variant"] == variant and all(r[k] == v for k, v in OURS.items())
    }
    theirs = {r["fold"]: r for r in basic if r["seed"] == seed and r["variant"] == variant}
    return [(mine[f], theirs[f]) for f in sorted(mine.keys() & theirs.keys())]


def _variant_block(rows: list[tuple[dict, dict]], variant: str) -> list[str]:
    last = np.array([[a["last"]["dice"], b["last"]["dice"]] for a, b in rows])
    best = np.array([[a["best"]["dice"], b["best"]["dice"]] for a, b in rows])
    speed = np.array([a["train_images_per_second"] / b["train_images_per_second"] for a, b in rows])
    lines = [
        f"Seed {rows[0][0]['seed']}, float32, {variant} malloc, last-epoch Dice:",
        "",
        "| fold | our U-Net | BasicUNet | ours - BasicUNet | our train img/s | BasicUNet train img/s |",
        "|---|---|---|---|---|---|",
    ]
    for (a, b), (x, y) in zip(rows, last, strict=True):
        lines.append(
            f"| {a['fold']} | {x:.3f} | {y:.3f} | {x - y:+.3f} | {a['train_images_per_second']:.1f} | "
            f"{b['train_images_per_second']:.1f} |"
        )
    if len(rows) > 1:
        lines.append(
            f"| mean +- sd | {mean_sd(last[:, 0])} | {mean_sd(last[:, 1])} | "
            f"{mean_sd(last[:, 0] - last[:, 1], True)} | | |"
        )
        ahead = int((last[:, 0] > last[:, 1]).sum())
        lines += [
            "",
            f"Ours ends ahead on {ahead} of {len(rows)} folds. At the best epoch: ours {mean_sd(best[:, 0])}, "
            f"BasicUNet {mean_sd(best[:, 1])}, paired difference {mean_sd(best[:, 0] - best[:, 1], True)}. "
            f"Ours trains {speed.min():.1f}-{speed.max():.1f} times as fast.",
        ]
    return lines


def markdown(ours: list[dict], basic: list[dict], seed: int = 0) -> str | None:
    """The BENCHMARKS.md section, or None when no fold was measured by both benchmarks."""
    blocks = []
    for variant in VARIANTS:
        rows = pairs(ours, basic, seed, variant)
        if rows:
            blocks += ["", *_variant_block(rows, variant)]
    if not blocks:
        return None
    lines = [
        "## Our U-Net against BasicUNet, fold by fold",
        "",
        "Command: `python benchmarks/seg_vs_basicunet.py` (also run by `seg_busi.py` and `monai_basicunet.py` "
        "after every run)  ",
        "Pairs the default U-Net rows of the segmentation section (depth 4, constant learning rate, float32) "
        "with the BasicUNet rows of the section above, by fold, seed and malloc setting. "
        "Differences and standard deviations are over folds; a difference smaller than its standard deviation "
        "is not one the folds can tell apart.",
        *blocks,
        "",
    ]
    return "\n".join(lines)


def update(markdown_path: Path, seg_json: Path, basic_json: Path, seed: int = 0) -> bool:
    """Re-render the section from the two result files; returns False (and writes nothing) without pairs."""
    if not (seg_json.exists() and basic_json.exists()):
        return False
    body = markdown(json.loads(seg_json.read_text())["runs"], json.loads(basic_json.read_text())["runs"], seed)
    if body is None:
        return False
    write_section(markdown_path, SECTION, body)
    print(f"Wrote the '{SECTION}' section of {markdown_path}", flush=True)
    return True


def update_comparison(args: argparse.Namespace, seg_json: Path, basic_json: Path) -> None:
    """After a benchmark run: re-render the section in ``args.markdown`` unless ``--no-markdown`` was given."""
    if not args.no_markdown:
        update(args.markdown, seg_json, basic_json)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seg-json", type=Path, default=SEG_JSON, help="seg_busi.py's results")
    p.add_argument("--basic-json", type=Path, default=BASIC_JSON, help="monai_basicunet.py's results")
    p.add_argument("--markdown", type=Path, default=REPO / "BENCHMARKS.md", help="BENCHMARKS.md to update")
    p.add_argument("--seed", type=int, default=0, help="the seed whose runs are paired")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    for path in (args.seg_json, args.basic_json):
        if not path.exists():
            print(f"error: no results file {path}; run the benchmark that writes it first", file=sys.stderr)
            return 2
    if not update(args.markdown, args.seg_json, args.basic_json, args.seed):
        print(f"error: no fold was measured with seed {args.seed} by both benchmarks", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
