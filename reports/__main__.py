"""Reports of saved runs.

Usage:
    python -m reports html runs/seg/exp            # writes runs/seg/exp/report.html
    python -m reports html runs/cls/cv             # a --fold all run: each fold's page, then the summary's
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reports.html import write_report


def main(argv: list[str] | None = None) -> int:
    """Write ``report.html`` into each folder given; 2 on a folder without results."""
    parser = argparse.ArgumentParser(prog="python -m reports", description="Reports of saved runs.")
    sub = parser.add_subparsers(dest="command", required=True)
    page = sub.add_parser("html", help="write report.html into a run folder (a fold, an evaluation's folder)")
    page.add_argument("runs", nargs="+", type=Path, help="run folders")
    args = parser.parse_args(argv)
    for run in args.runs:
        folders = sorted(p for p in run.glob("fold*") if (p / "metrics.json").is_file()) + [run]
        for folder in folders:
            try:
                print(f"Wrote {write_report(folder)}")
            except FileNotFoundError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
