"""Grouped, stratified cross-validation folds that keep duplicates together.

A splits file is JSON: an object with the parameters it was made with and
``"folds"``, a list of ``{"train": [...], "val": [...]}`` of case ids (plus
``"test"`` and ``"excluded"`` id lists). A plain list of folds, as nnU-Net
writes it, is accepted too.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from core.atomic import write_json
from core.classes import CLASS_NAMES
from core.errors import DataError, MissingFileError, OptionError, Problem

SPLITS_VERSION = 1


def _strata(labels: Sequence[str], sites: Sequence[str] | None) -> np.ndarray:
    """Stratum of each case: its class, or its class and site when ``sites`` is given."""
    y = np.array([CLASS_NAMES.index(label) for label in labels])
    if sites is None:
        return y
    names = sorted(set(sites))
    return y * len(names) + np.array([names.index(s) for s in sites])


def _grouped_folds(
    ids: Sequence[str],
    labels: Sequence[str],
    groups: Sequence[str],
    n_folds: int,
    seed: int,
    sites: Sequence[str] | None = None,
) -> list[tuple[list[str], list[str]]]:
    n_groups = len(set(groups))
    if n_folds < 2:
        raise OptionError(f"`folds` must be at least 2. Received: folds={n_folds}")
    if n_groups < n_folds:
        raise DataError(
            Problem(
                "too_few_groups",
                f"{n_folds} folds need at least {n_folds} independent groups of cases; the dataset has {n_groups}",
            )
        )
    y = _strata(labels, sites)
    cv = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    ids_arr = np.array(ids, dtype=object)
    out = []
    with warnings.catch_warnings():
        # sklearn warns when a class has fewer members than folds; the split is still valid.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        for tr, va in cv.split(np.zeros(len(ids)), y, groups=np.array(groups, dtype=object)):
            out.append((sorted(ids_arr[tr].tolist()), sorted(ids_arr[va].tolist())))
    return out


def _pick(idx: list[int], *columns: Sequence[str] | None) -> list[list[str] | None]:
    """The entries ``idx`` of each aligned column (None stays None)."""
    return [None if c is None else [c[i] for i in idx] for c in columns]


def make_splits(
    ids: Sequence[str],
    labels: Sequence[str],
    groups: Sequence[str],
    n_folds: int = 5,
    seed: int = 0,
    test_fraction: float = 0.0,
    excluded: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
    sites: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Make K stratified folds grouped by ``groups``, with an optional held-out test set.

    Args:
        ids: Case ids (aligned with ``labels`` and ``groups``).
        labels: Class name of each case, used to stratify.
        groups: Group of each case; a group never spans train and val (or test).
        n_folds: Number of folds (at least 2).
        seed: Seed of the shuffle; the same inputs and seed give the same folds.
        test_fraction: Share of groups held out before the folds are made (0 for none).
            The test set is one fold of a ``round(1 / test_fraction)``-fold grouped
            split, so its size is close to, not exactly, the fraction.
        excluded: Ids left out of every fold and the test set.
        extra: More parameters to record in the file (e.g. the duplicate threshold).
        sites: Site of each case: folds are then stratified by class and site together
            (``"stratify": "class+site"`` in the document), so every fold holds each site's classes.

    Returns:
        The splits document (see the module docstring).

    Raises:
        ValueError: On a bad ``n_folds`` or ``test_fraction``.
        DataError: When there are fewer groups than folds.
    """
    if not 0.0 <= test_fraction < 0.5:
        raise OptionError(f"`test_fraction` must be in [0, 0.5). Received: test_fraction={test_fraction}")
    skip = set(excluded)
    keep = [i for i, cid in enumerate(ids) if cid not in skip]
    ids_k, labels_k, groups_k, sites_k = _pick(keep, ids, labels, groups, sites)
    test: list[str] = []
    if test_fraction > 0:
        k = max(2, round(1 / test_fraction))
        _, test = _grouped_folds(ids_k, labels_k, groups_k, k, seed, sites_k)[0]
        test_set = set(test)
        rest = [i for i, cid in enumerate(ids_k) if cid not in test_set]
        ids_k, labels_k, groups_k, sites_k = _pick(rest, ids_k, labels_k, groups_k, sites_k)
    folds = _grouped_folds(ids_k, labels_k, groups_k, n_folds, seed, sites_k)
    doc: dict[str, Any] = {
        "version": SPLITS_VERSION,
        "seed": seed,
        "n_folds": n_folds,
        "test_fraction": test_fraction,
        "stratify": "class" if sites is None else "class+site",
    }
    doc.update(extra or {})
    doc["excluded"] = sorted(skip & set(ids))
    doc["test"] = sorted(test)
    doc["folds"] = [{"train": tr, "val": va} for tr, va in folds]
    return doc


def load_splits(path: str | Path) -> dict[str, Any]:
    """Read a splits file; a bare list of folds is wrapped into the document form.

    Raises:
        FileNotFoundError: If the file does not exist.
        DataError: If it is not valid JSON of the expected shape.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"`--splits` must be an existing JSON file. Received: {path}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(Problem("bad_splits", f"not valid JSON: {e}", path=path)) from e
    if isinstance(doc, list):
        doc = {"folds": doc}
    folds = doc.get("folds") if isinstance(doc, dict) else None
    if not isinstance(folds, list) or not folds:
        raise DataError(
            Problem(
                "bad_splits",
                'expected a non-empty list of {"train": [...], "val": [...]}',
                path=path,
            )
        )
    for k, fold in enumerate(folds):
        if not (isinstance(fold, dict) and isinstance(fold.get("train"), list) and isinstance(fold.get("val"), list)):
            raise DataError(Problem("bad_splits", f'fold {k} must be {{"train": [...], "val": [...]}}', path=path))
    doc.setdefault("test", [])
    doc.setdefault("excluded", [])
    return doc


def validate_splits(doc: Mapping[str, Any], groups: Mapping[str, str], source: str | Path | None = None) -> None:
    """Check a splits document against the dataset's cases and groups.

    Args:
        doc: A splits document.
        groups: Every case id of the dataset -> its group.
        source: The file the splits came from, named in errors.

    Raises:
        DataError: If an id is unknown, appears in both train and val of a fold
            (or in a fold and the test set), or a group is split across them.
    """
    path = Path(source) if source is not None else None
    problems: list[Problem] = []
    test = set(doc.get("test", []))
    for k, fold in enumerate(doc["folds"]):
        train, val = set(fold["train"]), set(fold["val"])
        unknown = sorted((train | val) - set(groups))
        if unknown:
            problems.append(
                Problem(
                    "unknown_id",
                    f"fold {k}: {len(unknown)} ids are not in the dataset: {unknown[:5]}",
                    path=path,
                )
            )
        both = sorted(train & val)
        if both:
            problems.append(Problem("leak", f"fold {k}: ids in both train and val: {both[:5]}", path=path))
        in_test = sorted((train | val) & test)
        if in_test:
            problems.append(Problem("leak", f"fold {k}: ids also in the test set: {in_test[:5]}", path=path))
        g_train = {groups[i] for i in train if i in groups}
        g_other = {groups[i] for i in val | test if i in groups}
        split = sorted(g_train & g_other)
        if split:
            members = {g: sorted(i for i in groups if groups[i] == g) for g in split[:3]}
            problems.append(
                Problem(
                    "group_split",
                    f"fold {k}: {len(split)} duplicate/patient groups are split between train "
                    f"and val/test, e.g. {members}",
                    path=path,
                )
            )
    if problems:
        raise DataError(problems)


def fold_ids(doc: Mapping[str, Any], fold: int) -> tuple[list[str], list[str]]:
    """Return ``(train_ids, val_ids)`` of fold ``fold``.

    Raises:
        ValueError: If ``fold`` is outside ``0..len(folds)-1``.
    """
    n = len(doc["folds"])
    if not 0 <= fold < n:
        raise OptionError(f"`fold` must be in 0..{n - 1}. Received: fold={fold}")
    f = doc["folds"][fold]
    return list(f["train"]), list(f["val"])


def leave_site_out(doc: Mapping[str, Any], sites: Mapping[str, str], groups: Mapping[str, str], site: str) -> dict:
    """A splits document with one fold: train on every other site, validate on ``site``.

    Cases in the document's ``excluded`` and ``test`` lists stay out. A training case whose group
    (a cross-site duplicate, a patient) has a member at ``site`` is left out of training too, so
    nothing the model validates on was seen in training; those ids are listed under ``"dropped"``.

    Args:
        doc: The dataset's splits document (its folds are not used).
        sites: Every case id -> its site.
        groups: Every case id -> its group.
        site: The held-out site.

    Raises:
        ValueError: If ``site`` is not a site of the data, or it is the only site.
    """
    names = sorted(set(sites.values()))
    if site not in names:
        raise OptionError(f"`--fold site:NAME`: NAME must be one of the sites {names}. Received: {site!r}")
    if len(names) < 2:
        raise OptionError(f"`--fold site:{site}` needs data from at least two sites; the data hold only {names}")
    out_ids = set(doc.get("excluded", [])) | set(doc.get("test", []))
    val = sorted(i for i, s in sites.items() if s == site and i not in out_ids)
    rest = sorted(i for i, s in sites.items() if s != site and i not in out_ids)
    keep = {k: v for k, v in doc.items() if k not in ("folds", "n_folds")}
    return drop_grouped_with_val({**keep, "holdout_site": site, "folds": [{"train": rest, "val": val}]}, groups)


def drop_grouped_with_val(doc: Mapping[str, Any], groups: Mapping[str, str]) -> dict:
    """``doc`` with every training id whose group has a member in its fold's validation left out.

    For folds put together from other splits (one site's folds joined with another's, a site held
    out), where a group found across them (a cross-site duplicate) can straddle train and val.
    The left-out ids, over all folds, are listed under ``"dropped"``; ``n_folds`` is set.
    """
    folds, dropped = [], []
    for fold in doc["folds"]:
        held = {groups[i] for i in fold["val"]}
        dropped += [i for i in fold["train"] if groups[i] in held]
        folds.append({"train": [i for i in fold["train"] if groups[i] not in held], "val": list(fold["val"])})
    return {**doc, "n_folds": len(folds), "dropped": sorted(set(dropped)), "folds": folds}


def save_splits(path: str | Path, doc: Mapping[str, Any]) -> Path:
    """Atomically write a splits document."""
    return write_json(path, dict(doc))
