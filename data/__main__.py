"""Command line of the data layer.

Usage:
    python -m data inspect                                  # built-in synthetic data
    python -m data inspect --data-dir ../shared/datasets/Dataset_BUSI_with_GT
    python -m data inspect --data-dir manifest.csv --folds 5 --seed 0 --strict
    python -m data inspect --data-dir ../shared/datasets/Dataset_BUSI_with_GT ../shared/datasets/BUS-BRA/manifest.csv
    python -m data check --data-dir new_site/ --schema runs/data/Dataset_BUSI_with_GT/schema.json
    python -m data check --run runs/seg/exp --data-dir unlabelled_scans/
    python -m data synth --out /tmp/synthetic --per-class 50 --size 256 --seed 0
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from cli import exit_on_user_error
from core.atomic import write_json
from core.errors import DataError, MissingFileError, OptionError
from data.duplicates import NEAR_DUPLICATE_BITS
from data.report import (
    InspectOptions,
    analyze_dataset,
    dataset_out_dir,
    format_summary,
    write_report,
)
from data.scan import scan
from data.schema import check_schema
from data.sources import discover_sources, resolve_sources
from data.synthetic import SynthConfig, generate_synthetic


def _progress(desc: str):
    bar: dict[str, tqdm] = {}

    def update(done: int, total: int) -> None:
        if "b" not in bar:
            bar["b"] = tqdm(total=total, desc=desc, unit="img", file=sys.stderr, mininterval=0.5)
        bar["b"].update(done - bar["b"].n)
        if done == total:
            bar["b"].close()

    return update


def cmd_inspect(args: argparse.Namespace) -> int:
    data_dir = resolve_sources(args.data_dir, _progress("generating built-in synthetic data"))
    out = Path(args.out) if args.out else dataset_out_dir(data_dir)
    opts = InspectOptions(
        folds=args.folds,
        seed=args.seed,
        test_fraction=args.test_fraction,
        strict=args.strict,
        keep_conflicts=args.keep_conflicts,
        near_duplicate_bits=args.near_dup_bits,
    )
    names = " ".join(f"{src.name}={src.path}" for src in data_dir)
    print(f"inspect: data_dir={names} out={out} " + " ".join(f"{k}={v}" for k, v in opts.__dict__.items()))
    t0 = time.perf_counter()
    analysis = analyze_dataset(
        data_dir,
        opts,
        splits_file=args.splits,
        existing_splits=out / "splits.json",
        progress=_progress("reading images"),
    )
    paths = write_report(analysis, out)
    print(format_summary(analysis))
    print(f"Done in {time.perf_counter() - t0:.1f}s. Wrote:")
    for name, p in paths.items():
        print(f"  {name:<7} {p}")
    return 0


def cmd_check_run(args: argparse.Namespace) -> int:
    """Unlabelled images against a run's training images: exit 1 when the images' median has shifted."""
    from data.imageio import read_image
    from data.shift import image_statistics, outside, read_description, summarize, summary_line
    from inference.sources import collect_sources

    run = Path(args.run)
    description = read_description(run) or read_description(run / "fold0")
    if description is None:
        raise MissingFileError(f"`--run` must be a run (or fold) folder with image_description.json. Received: {run}")
    files, _ = collect_sources(args.data_dir)
    stats = [image_statistics(read_image(f)) for f in tqdm(files, unit="img", disable=len(files) < 2)]
    summary = summarize(stats, description)
    summary["flagged_files"] = {
        str(f): fl for f, s in zip(files, stats, strict=True) if (fl := outside(s, description))
    }
    print(f"{len(files)} image(s) against the {description['n_images']} training images of {run}:")
    print(f"  {summary_line(summary)}")
    for name, fields in list(summary["flagged_files"].items())[:10]:
        print(f"  {name}: {', '.join(fields)}")
    if args.out:
        write_json(args.out, summary)
        print(f"Wrote {args.out}")
    return 1 if summary["shifted"] else 0


def cmd_check(args: argparse.Namespace) -> int:
    if args.run:
        return cmd_check_run(args)
    if not args.schema:
        raise OptionError("`check` needs --schema (a labelled dataset) or --run (unlabelled images)")
    schema_path = Path(args.schema)
    if not schema_path.is_file():
        raise MissingFileError(f"`--schema` must be an existing schema JSON file. Received: {schema_path}")
    try:
        schema = json.loads(schema_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{schema_path}: not valid JSON: {e}") from e
    sources = resolve_sources(args.data_dir, _progress("generating built-in synthetic data"))
    cases = discover_sources(sources)
    result = scan(cases, progress=_progress("reading images"))
    if result.errors:
        raise DataError(result.errors)
    stats = result.stats
    site_of = stats["site"].fillna("")
    sites = sorted(set(site_of))
    by_site = {}
    for site in sites:  # each site on its own: a shift at one site is not averaged away by another
        part = stats[site_of == site]
        has_masks = any(cases[i].masks for i in part["id"])
        by_site[site] = check_schema(part, schema, has_masks)
    total = sum(len(a) for a in by_site.values())
    print(f"Checked {len(stats)} cases of {', '.join(map(str, (s.path for s in sources)))} against {schema_path}")
    for site, anomalies in by_site.items():
        n = int((site_of == site).sum())
        what = f"site {site} ({n} cases)" if len(sites) > 1 else "the dataset"
        print(f"{what}: {len(anomalies)} anomalies" if anomalies else f"No anomalies: {what} matches the schema.")
        for a in anomalies:
            ids = f" e.g. {list(a.case_ids[:5])}" if a.case_ids else ""
            print(f"  [{a.kind}] {a.field}: {a.message}{ids}")
    if args.out:
        p = write_json(
            args.out,
            {
                "data_dir": [str(s.path) for s in sources],
                "schema": str(schema_path),
                "anomalies": [a.to_dict() for site in sites for a in by_site[site]],
                "sites": {site: [a.to_dict() for a in by_site[site]] for site in sites},
            },
        )
        print(f"Wrote {p}")
    return 1 if total else 0


def cmd_synth(args: argparse.Namespace) -> int:
    cfg = SynthConfig(per_class=args.per_class, size=args.size, seed=args.seed)
    out = generate_synthetic(args.out, cfg, progress=_progress("generating"))
    print(f"Wrote {cfg.per_class * 3} synthetic images with masks to {out}")
    return 0


def _inspect_parser(sub: argparse._SubParsersAction) -> None:
    """The ``inspect`` command's flags."""
    i = sub.add_parser(
        "inspect",
        help="validate a dataset, find duplicates, write stats, schema, report and splits",
    )
    i.add_argument(
        "--data-dir",
        nargs="+",
        help="BUSI-layout folder or manifest .csv, or several (each a site; NAME=PATH names one) "
        "(default: built-in synthetic data)",
    )
    i.add_argument("--out", help="output folder (default: runs/data/<dataset name>)")
    i.add_argument("--folds", type=int, default=5, help="number of cross-validation folds (default 5)")
    i.add_argument("--seed", type=int, default=0, help="seed of the split shuffle (default 0)")
    i.add_argument(
        "--test-fraction",
        type=float,
        default=0.0,
        help="share of groups held out as a test set before the folds (default 0: none)",
    )
    i.add_argument("--splits", help="use this splits JSON file instead of making one (it is validated)")
    i.add_argument("--strict", action="store_true", help="treat warnings (empty lesion masks, ...) as errors")
    i.add_argument(
        "--keep-conflicts",
        action="store_true",
        help="keep exact duplicates filed under two classes (left out by default)",
    )
    i.add_argument(
        "--near-dup-bits",
        type=int,
        default=NEAR_DUPLICATE_BITS,
        help="largest pHash distance (of 64 bits) at which two images are near-duplicates "
        f"(default {NEAR_DUPLICATE_BITS})",
    )
    i.set_defaults(func=cmd_inspect)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Build the parser and parse ``argv``."""
    p = argparse.ArgumentParser(
        prog="python -m data",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    sub = p.add_subparsers(dest="command", required=True)

    _inspect_parser(sub)
    c = sub.add_parser(
        "check",
        help="validate a dataset against a saved schema, or unlabelled images against a run; exit 1 on anomalies",
    )
    c.add_argument(
        "--data-dir",
        nargs="+",
        help="BUSI-layout folder or manifest .csv, or several, each checked as its own site "
        "(default: built-in synthetic data); with --run: image files, folders or glob patterns, no labels needed",
    )
    c.add_argument("--schema", help="schema.json written by `inspect`")
    c.add_argument(
        "--run",
        help="a run (or fold) folder: check unlabelled images against its training images (image_description.json)",
    )
    c.add_argument("--out", help="also write the anomalies to this JSON file")
    c.set_defaults(func=cmd_check)

    s = sub.add_parser("synth", help="generate a synthetic dataset in the BUSI layout")
    s.add_argument("--out", required=True, help="new folder to write the dataset to")
    s.add_argument(
        "--per-class",
        type=int,
        default=SynthConfig.per_class,
        help="images per class (default 100)",
    )
    s.add_argument("--size", type=int, default=SynthConfig.size, help="image height in pixels (default 256)")
    s.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    s.set_defaults(func=cmd_synth)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (2 on a data error, shown without traceback)."""
    args = parse_args(argv)
    return exit_on_user_error(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
