"""Run folders: ``<project>/<task>/<name>``, incremented and never overwritten."""

from __future__ import annotations

import re
from pathlib import Path


def increment_run_dir(project: str | Path, task: str, name: str) -> Path:
    """Return the first free folder among ``name``, ``name2``, ``name3``... (not created).

    Args:
        project: Root of all runs (``runs``).
        task: ``"seg"`` or ``"cls"``.
        name: Run name.
    """
    root = Path(project) / task
    path = root / name
    if not path.exists():
        return path
    stem = re.sub(r"\d+$", "", name) or name
    taken = {p.name for p in root.iterdir()} if root.exists() else set()
    n = 2
    while f"{stem}{n}" in taken:
        n += 1
    return root / f"{stem}{n}"
