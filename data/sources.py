"""Several datasets as one: each source (a BUSI-layout folder or a manifest) is a site.

``--data-dir`` takes one source or several, each ``PATH`` or ``NAME=PATH``. One
source reads as it always has: case ids are the source's own. Several sources are
joined: every case id and group is prefixed with its source's name (``BUSI/benign
(1)``, ``BUS-BRA/Images/bus_0001-l``), so ids that collide across sources stay
apart, and each case's ``site`` is its source's name unless the manifest has a
``site`` column. Duplicate detection, grouping and stratified splitting then run
over the joined cases (:func:`data.report.analyze_dataset`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import DataError, OptionError, Problem
from data.discover import Case, discover

SITE_SEP = "/"
"""Separator between a source's name and a case id (or group) when several sources are joined."""
GENERIC_MANIFEST_STEMS = frozenset({"manifest"})
"""Manifest file names that say nothing about the dataset: such a manifest is named by its folder."""


@dataclass(frozen=True)
class Source:
    """One dataset given to ``--data-dir``.

    Attributes:
        name: The site's name (from ``NAME=PATH``, else :func:`dataset_name`).
        path: A BUSI-layout folder or a manifest ``.csv``.
    """

    name: str
    path: Path


def dataset_name(path: str | Path) -> str:
    """The name of a dataset: its folder's name, or a manifest's file stem.

    A manifest called ``manifest.csv`` is named by its folder (``BUS-BRA/manifest.csv`` ->
    ``BUS-BRA``), so two datasets that both ship a ``manifest.csv`` get different names.
    """
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return path.resolve().parent.name if path.stem.lower() in GENERIC_MANIFEST_STEMS else path.stem
    return path.resolve().name


def parse_sources(specs: str | Path | Source | Sequence[str | Path | Source]) -> list[Source]:
    """Turn ``--data-dir`` values (``PATH`` or ``NAME=PATH``; a :class:`Source` passes as it is) into named sources.

    Raises:
        ValueError: If no source is given, a name is empty or holds ``/``, or two sources share a name.
    """
    items = [specs] if isinstance(specs, (str, Path, Source)) else list(specs)
    if not items:
        raise OptionError("`--data-dir` needs at least one dataset folder or manifest")
    out: list[Source] = []
    for item in items:
        if isinstance(item, Source):
            out.append(item)
            continue
        text = str(item)
        name, sep, rest = text.partition("=")
        if sep and name and SITE_SEP not in name and not Path(text).exists():
            out.append(Source(name.strip(), Path(rest)))
        else:
            out.append(Source(dataset_name(text), Path(text)))
    for s in out:
        if not s.name or SITE_SEP in s.name:
            raise OptionError(f"`--data-dir`: a site name must be non-empty without {SITE_SEP!r}. Received: {s.name!r}")
    seen: dict[str, Path] = {}
    for s in out:
        if s.name in seen:
            raise OptionError(
                f"`--data-dir`: two sources are both named {s.name!r} ({seen[s.name]} and {s.path}); "
                f"name them apart with NAME=PATH, e.g. {s.name}2={s.path}"
            )
        seen[s.name] = s.path
    return out


def sources_label(sources: Sequence[Source]) -> str:
    """One name for the joined sources (``BUSI+BUS-BRA``), used for the dataset's report folder."""
    return "+".join(s.name for s in sources)


def resolve_sources(
    data_dir: str | Path | Sequence[str | Path] | None, progress: Callable[[int, int], None] | None = None
) -> list[Source]:
    """``--data-dir``'s sources, or the built-in synthetic data when none is given."""
    from data.synthetic import resolve_data_dir

    if not data_dir:
        path = resolve_data_dir(None, progress)
        return [Source(dataset_name(path), path)]
    return parse_sources(data_dir)


def discover_sources(sources: Sequence[Source]) -> dict[str, Case]:
    """Find the cases of every source and join them (see the module docstring).

    Raises:
        FileNotFoundError: If a source does not exist.
        DataError: On problems in any source; every source is read and all problems are raised together.
    """
    if len(sources) == 1:
        s = sources[0]
        return {i: dataclasses.replace(c, site=c.site or s.name) for i, c in discover(s.path).items()}
    problems: list[Problem] = []
    out: dict[str, Case] = {}
    for s in sources:
        try:
            cases = discover(s.path)
        except DataError as e:
            problems.extend(e.problems)
            continue
        for cid, c in cases.items():
            key = f"{s.name}{SITE_SEP}{cid}"
            group = f"{s.name}{SITE_SEP}{c.group}" if c.group else None
            out[key] = dataclasses.replace(c, case_id=key, group=group, site=c.site or s.name)
    if problems:
        raise DataError(problems)
    return out


def partition_by(records: Sequence[Case], attribute: str) -> dict[str, np.ndarray]:
    """Indices of ``records`` per value of ``attribute`` (``site`` or ``device``); empty if it never varies.

    A site breakdown needs two sites or more; a scanner breakdown needs the ``device`` column (one
    scanner is still reported, beside the images whose scanner is unknown).
    """
    values = [getattr(r, attribute) for r in records]
    known = {v for v in values if v}
    if not known or (attribute == "site" and len(set(values)) < 2):
        return {}
    names = np.array([v or "unknown" for v in values], dtype=object)
    return {v: np.flatnonzero(names == v) for v in sorted(set(names.tolist()))}


def breakdowns(records: Sequence[Case], entry: Callable[[np.ndarray], dict[str, Any]]) -> dict[str, Any]:
    """``per_site`` and ``per_device`` tables: ``entry(indices)`` for each value of :func:`partition_by`.

    A table is absent when its attribute does not vary (see :func:`partition_by`).
    """
    out: dict[str, Any] = {}
    for attribute in ("site", "device"):
        parts = partition_by(records, attribute)
        if parts:
            out[f"per_{attribute}"] = {value: entry(idx) for value, idx in parts.items()}
    return out
