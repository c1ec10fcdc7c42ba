"""Inspecting a dataset end to end: scan, validate, de-duplicate, split, report.

:func:`analyze_dataset` computes everything and writes nothing, so a dataset
that fails validation leaves no half-written output; :func:`write_report`
then writes each file atomically.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.atomic import atomic_write, write_json
from core.classes import CLASS_NAMES
from core.errors import DataError, Problem
from data.discover import Case
from data.duplicates import NEAR_DUPLICATE_BITS, DuplicatePair, find_duplicate_pairs, group_cases
from data.scan import ScanResult, scan
from data.schema import infer_schema
from data.sources import Source, discover_sources, parse_sources, sources_label
from data.splits import load_splits, make_splits, validate_splits

SPLITS_NAME = "splits.json"
STATS_NAME = "stats.csv"
SCHEMA_NAME = "schema.json"
REPORT_NAME = "report.json"


DataSpec = str | Path | Sequence[str | Path] | Sequence[Source]
"""One dataset (folder or manifest), or several sources (see :func:`data.sources.parse_sources`)."""


def dataset_out_dir(data: DataSpec, project: str | Path = "runs") -> Path:
    """``<project>/data/<dataset name>``, where a dataset's report and splits live.

    The name is the source's (``NAME=PATH``'s name, else :func:`data.sources.dataset_name`), ``A+B`` of several.
    """
    return Path(project) / "data" / sources_label(parse_sources(data))


@dataclass(frozen=True)
class InspectOptions:
    """How a dataset is inspected and split (plain values, saved with the report)."""

    folds: int = 5
    seed: int = 0
    test_fraction: float = 0.0
    strict: bool = False
    keep_conflicts: bool = False
    near_duplicate_bits: int = NEAR_DUPLICATE_BITS

    def split_params(self) -> dict[str, Any]:
        """Parameters that determine the splits; a reused splits file must match them."""
        return {
            "n_folds": self.folds,
            "seed": self.seed,
            "test_fraction": self.test_fraction,
            "near_duplicate_bits": self.near_duplicate_bits,
            "keep_conflicts": self.keep_conflicts,
        }


@dataclass
class DatasetAnalysis:
    """Everything learned about a dataset by :func:`analyze_dataset`."""

    data_dir: Path | str
    options: InspectOptions
    cases: dict[str, Case]
    scan: ScanResult
    pairs: list[DuplicatePair]
    groups: dict[str, str]
    excluded: dict[str, str]
    splits: dict[str, Any]
    splits_source: str
    schema: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def cross_class_pairs(self) -> list[DuplicatePair]:
        """Duplicate pairs filed under different classes."""
        return [p for p in self.pairs if p.cross_class]

    @property
    def sites(self) -> dict[str, str]:
        """Case id -> site."""
        return {i: c.site or "" for i, c in self.cases.items()}

    @property
    def cross_site_pairs(self) -> list[DuplicatePair]:
        """Duplicate pairs whose two images come from different sites."""
        sites = self.sites
        return [p for p in self.pairs if sites.get(p.a) != sites.get(p.b)]


def site_table(labels: dict[str, str], sites: dict[str, str], ids: Sequence[str] | None = None) -> dict[str, dict]:
    """Images per class at each site (over ``ids``, default all)."""
    out: dict[str, dict] = {}
    for i in labels if ids is None else ids:
        entry = out.setdefault(sites.get(i, ""), {"total": 0, **{n: 0 for n in CLASS_NAMES}})
        entry["total"] += 1
        entry[labels[i]] += 1
    return dict(sorted(out.items()))


def _conflicting_exact(pairs: list[DuplicatePair]) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in pairs:
        if p.exact and p.cross_class:
            reason = f"exact duplicate filed under two classes ({p.a}: {p.label_a}, {p.b}: {p.label_b})"
            out.setdefault(p.a, reason)
            out.setdefault(p.b, reason)
    return out


def _resolve_splits(
    opts: InspectOptions,
    ids: list[str],
    labels: list[str],
    sites: list[str],
    groups: dict[str, str],
    excluded: dict[str, str],
    splits_file: Path | None,
    existing: Path | None,
) -> tuple[dict[str, Any], str]:
    if splits_file is not None:
        doc = load_splits(splits_file)
        validate_splits(doc, groups, source=splits_file)
        return doc, f"user file {splits_file}"
    if existing is not None and existing.is_file():
        doc = load_splits(existing)
        want = opts.split_params()
        differ = {k: (doc.get(k), v) for k, v in want.items() if doc.get(k) != v}
        if differ:
            detail = ", ".join(f"{k}: file has {a!r}, asked {b!r}" for k, (a, b) in differ.items())
            raise DataError(
                Problem(
                    "splits_mismatch",
                    f"existing splits were made with other parameters ({detail}); delete the "
                    "file to make new splits, or pass the same options",
                    path=existing,
                )
            )
        validate_splits(doc, groups, source=existing)
        used = {i for f in doc["folds"] for i in f["train"] + f["val"]} | set(doc["test"])
        new = sorted(set(ids) - used - set(doc["excluded"]))
        if new:
            raise DataError(
                Problem(
                    "splits_stale",
                    f"{len(new)} cases of the dataset are in no fold (e.g. {new[:5]}): the "
                    "dataset changed since the splits were written; delete the file to re-split",
                    path=existing,
                )
            )
        return doc, f"reused {existing}"
    doc = make_splits(
        ids,
        labels,
        [groups[i] for i in ids],
        n_folds=opts.folds,
        seed=opts.seed,
        test_fraction=opts.test_fraction,
        excluded=sorted(excluded),
        sites=sites if len(set(sites)) > 1 else None,
        extra={
            "near_duplicate_bits": opts.near_duplicate_bits,
            "keep_conflicts": opts.keep_conflicts,
        },
    )
    validate_splits(doc, groups)
    return doc, "new"


def analyze_dataset(
    data_dir: DataSpec,
    options: InspectOptions | None = None,
    splits_file: str | Path | None = None,
    existing_splits: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DatasetAnalysis:
    """Discover, read and validate every case, find duplicates and make or check splits.

    Writes nothing.

    Args:
        data_dir: A BUSI-layout folder or a manifest CSV, or several (each a site; see
            :mod:`data.sources`): duplicates are then found across sites too, and folds are
            stratified by class and site.
        options: Inspection and split options.
        splits_file: A user-supplied splits file to validate and use.
        existing_splits: A previous ``splits.json`` to reuse when present.
        progress: Called as ``progress(done, total)`` while images are read.

    Returns:
        The analysis.

    Raises:
        FileNotFoundError: If ``data_dir`` or ``splits_file`` does not exist.
        DataError: On any error in the data (or any warning when ``strict``), or
            splits that leak, naming every file concerned.
    """
    opts = options or InspectOptions()
    sources = parse_sources(data_dir)
    data_dir = sources[0].path if len(sources) == 1 else sources_label(sources)
    cases = discover_sources(sources)
    result = _checked_scan(cases, opts, progress)
    stats = result.stats
    ids = stats["id"].tolist()
    labels = stats["label"].tolist()
    pairs = find_duplicate_pairs(
        ids, labels, stats["pixel_hash"].tolist(), stats["phash"].tolist(), opts.near_duplicate_bits
    )
    user_groups = {c.case_id: c.group for c in cases.values()}
    groups = group_cases(ids, [(p.a, p.b) for p in pairs], user_groups)
    excluded = {} if opts.keep_conflicts else _conflicting_exact(pairs)
    sites = [cases[i].site or "" for i in ids]
    user_file, previous = (Path(f) if f is not None else None for f in (splits_file, existing_splits))
    splits, source = _resolve_splits(opts, ids, labels, sites, groups, excluded, user_file, previous)
    stats = stats.assign(dup_group=[groups[i] for i in ids])
    notes = [] if result.has_masks else ["no mask files: the dataset can be used for classification only"]
    return DatasetAnalysis(
        data_dir=data_dir,
        options=opts,
        cases=cases,
        scan=ScanResult(stats, result.errors, result.warnings, result.has_masks),
        pairs=pairs,
        groups=groups,
        excluded=excluded,
        splits=splits,
        splits_source=source,
        schema=infer_schema(stats, result.has_masks),
        notes=notes,
    )


def _checked_scan(cases: dict, opts: InspectOptions, progress: Callable[[int, int], None] | None) -> ScanResult:
    """Read every case; raise on any error, and on any warning under ``strict``."""
    result = scan(cases, progress=progress)
    if result.errors:
        raise DataError(result.errors)
    if opts.strict and result.warnings:
        raise DataError(
            [Problem(w.kind, f"{w.message} (an error under --strict)", w.path, w.case_id) for w in result.warnings]
        )
    return result


def _fold_summary(doc: dict[str, Any], labels: dict[str, str], sites: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    several = len(set(sites.values())) > 1
    for k, f in enumerate(doc["folds"]):
        entry: dict[str, Any] = {"fold": k}
        for part in ("train", "val"):
            c = Counter(labels[i] for i in f[part] if i in labels)
            entry[part] = {"total": len(f[part]), **{n: c.get(n, 0) for n in CLASS_NAMES}}
            if several:
                entry[part]["sites"] = site_table(labels, sites, [i for i in f[part] if i in labels])
        out.append(entry)
    return out


def report_dict(a: DatasetAnalysis, outputs: dict[str, str]) -> dict[str, Any]:
    """Build the JSON report of an analysis."""
    stats = a.scan.stats
    labels = dict(zip(stats["id"], stats["label"], strict=True))
    per_class = {}
    for name in CLASS_NAMES:
        part = stats[stats["label"] == name]
        per_class[name] = {
            "images": len(part),
            "mask_files": int(part["masks_merged"].sum()),
            "cases_with_merged_masks": int((part["masks_merged"] > 1).sum()),
            "empty_masks": int((part["mask_area_fraction"] == 0).sum()),
        }
    group_sizes = Counter(a.groups.values())
    multi = {g: sorted(i for i in a.groups if a.groups[i] == g) for g, n in group_sizes.items() if n > 1}
    return {
        "data_dir": str(a.data_dir),
        "options": a.options.__dict__,
        "num_cases": len(stats),
        "classes": per_class,
        "mask_files": int(stats["masks_merged"].sum()),
        "warnings": [w.to_dict() for w in a.scan.warnings],
        "notes": a.notes,
        "duplicates": {
            "near_duplicate_bits": a.options.near_duplicate_bits,
            "pairs": [p.to_dict() for p in a.pairs],
            "exact_pairs": sum(p.exact for p in a.pairs),
            "cross_class": [p.to_dict() for p in a.cross_class_pairs],
            "cross_site": [p.to_dict() for p in a.cross_site_pairs],
        },
        "groups": {
            "num_groups": len(group_sizes),
            "largest": max(group_sizes.values()) if group_sizes else 0,
            "multi_member": multi,
        },
        "excluded": a.excluded,
        "sites": site_table(labels, a.sites),
        "splits": {
            "source": a.splits_source,
            "folds": _fold_summary(a.splits, labels, a.sites),
            "test": len(a.splits.get("test", [])),
        },
        "outputs": outputs,
    }


def write_report(a: DatasetAnalysis, out_dir: str | Path) -> dict[str, Path]:
    """Write statistics CSV, schema, splits and report JSON into ``out_dir``, atomically.

    Returns:
        Name -> path of every file written.
    """
    out = Path(out_dir)
    paths = {
        "stats": out / STATS_NAME,
        "schema": out / SCHEMA_NAME,
        "splits": out / SPLITS_NAME,
        "report": out / REPORT_NAME,
    }
    atomic_write(paths["stats"], lambda p: a.scan.stats.to_csv(p, index=False))
    write_json(paths["schema"], a.schema)
    write_json(paths["splits"], a.splits)
    write_json(paths["report"], report_dict(a, {k: str(v) for k, v in paths.items()}))
    return paths


def format_summary(a: DatasetAnalysis) -> str:
    """A short, human-readable summary of an analysis."""
    stats = a.scan.stats
    lines = [f"Dataset {a.data_dir}: {len(stats)} cases"]
    lines.append(f"  {'class':<10} {'images':>7} {'mask files':>11} {'merged':>7} {'empty':>6}")
    for name in CLASS_NAMES:
        part = stats[stats["label"] == name]
        lines.append(
            f"  {name:<10} {len(part):>7} {int(part['masks_merged'].sum()):>11} "
            f"{int((part['masks_merged'] > 1).sum()):>7} "
            f"{int((part['mask_area_fraction'] == 0).sum()):>6}"
        )
    labels = dict(zip(stats["id"], stats["label"], strict=True))
    by_site = site_table(labels, a.sites)
    if len(by_site) > 1:
        lines.append(f"  {'site':<24} {'images':>7} " + " ".join(f"{n:>9}" for n in CLASS_NAMES))
        for site, e in by_site.items():
            lines.append(f"  {site:<24} {e['total']:>7} " + " ".join(f"{e[n]:>9}" for n in CLASS_NAMES))
    n_exact = sum(p.exact for p in a.pairs)
    sizes = Counter(a.groups.values())
    multi = sum(1 for n in sizes.values() if n > 1)
    lines.append(
        f"Duplicates: {len(a.pairs)} pairs ({n_exact} exact, pHash <= "
        f"{a.options.near_duplicate_bits} of 64 bits), joined into {multi} groups of 2+ cases "
        f"(largest {max(sizes.values()) if sizes else 0}); {len(sizes)} groups in all"
    )
    if len(by_site) > 1:
        lines.append(f"Duplicates across sites: {len(a.cross_site_pairs)} pairs (kept in one fold)")
    cross = a.cross_class_pairs
    if cross:
        lines.append(f"Duplicates filed under two classes: {len(cross)}")
        for p in cross:
            kind = "exact" if p.exact else f"pHash distance {p.distance}"
            fate = "  -> left out" if p.a in a.excluded else ""
            lines.append(f"  {p.a} ({p.label_a}) ~ {p.b} ({p.label_b}): {kind}{fate}")
    if a.excluded:
        lines.append(
            f"Left out of training and evaluation: {len(a.excluded)} cases "
            "(conflicting exact duplicates; --keep-conflicts keeps them)"
        )
    lines.append(f"Warnings: {len(a.scan.warnings)}")
    kinds = Counter(w.kind for w in a.scan.warnings)
    for kind, n in sorted(kinds.items()):
        examples = [w for w in a.scan.warnings if w.kind == kind][:3]
        lines.append(f"  {kind}: {n}, e.g. " + "; ".join(str(w) for w in examples))
    lines.extend(f"Note: {n}" for n in a.notes)
    folds = a.splits["folds"]
    sizes_txt = ", ".join(f"{len(f['train'])}/{len(f['val'])}" for f in folds)
    lines.append(
        f"Splits ({a.splits_source}): {len(folds)} folds, train/val sizes {sizes_txt}"
        + (f", test {len(a.splits['test'])}" if a.splits.get("test") else "")
        + (f", stratified by {a.splits['stratify']}" if a.splits.get("stratify") else "")
    )
    return "\n".join(lines)
