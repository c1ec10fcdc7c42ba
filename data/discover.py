"""Finding the cases of a dataset: the BUSI folder layout or a manifest CSV.

Both readers return records keyed by case id, never parallel lists. Layout
problems (unknown class folder, mask without image, missing file, duplicate
id, empty dataset) are collected and raised together as one :class:`DataError`
that names every file concerned.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from core.classes import CLASS_NAMES, LESION_CLASSES, normalize_label
from core.errors import DataError, MissingFileError, OptionError, Problem
from data.imageio import IMAGE_EXTENSIONS

_MASK_STEM = re.compile(r"^(?P<stem>.+?)_mask(?:_(?P<k>\d+))?$", re.IGNORECASE)
MANIFEST_REQUIRED = ("image", "label")
MANIFEST_OPTIONAL = ("mask", "group", "id", "site", "device")


@dataclass(frozen=True)
class Case:
    """One image and what is known about it.

    Attributes:
        case_id: Unique id within the dataset (BUSI: the file stem, ``"benign (1)"``).
        image: Path of the image file.
        masks: Mask files of this image, merged with logical OR (may be empty).
        label: One of :data:`core.classes.CLASS_NAMES`.
        group: A user-given group (e.g. patient id) or None.
        site: The hospital or dataset the image comes from (a manifest's ``site`` column, else the
            source's name when the data come from several sources), or None.
        device: The scanner (a manifest's ``device`` column), or None.
    """

    case_id: str
    image: Path
    label: str
    masks: tuple[Path, ...] = field(default_factory=tuple)
    group: str | None = None
    site: str | None = None
    device: str | None = None


def discover(data: str | Path) -> dict[str, Case]:
    """Find the cases of a dataset given as a BUSI-layout folder or a manifest CSV.

    Args:
        data: A folder with one sub-folder per class, or a ``.csv`` manifest.

    Returns:
        Cases keyed by case id, in a stable (sorted) order.

    Raises:
        FileNotFoundError: If ``data`` does not exist.
        DataError: If the layout or manifest has problems; every one is listed.
    """
    path = Path(data)
    if not path.exists():
        raise MissingFileError(
            f"`--data-dir` must be a dataset folder or a .csv manifest. Received: {path} (no such file or folder)"
        )
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise DataError(Problem("bad_data_dir", "expected a folder or a .csv manifest", path=path))
        return read_manifest(path)
    return discover_folder(path)


def _is_hidden(p: Path) -> bool:
    return p.name.startswith(".") or p.name in {"Thumbs.db", "desktop.ini", "__MACOSX"}


def _natural_key(s: str) -> list[object]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def discover_folder(root: str | Path) -> dict[str, Case]:
    """Find the cases of a BUSI-layout folder.

    ``root/<class>/<stem>.png`` is an image; ``<stem>_mask.png``,
    ``<stem>_mask_1.png``, ... beside it are its masks. Class folder names are
    matched case-insensitively against :data:`core.classes.CLASS_NAMES`.

    Raises:
        DataError: On an unknown class folder, a mask with no image, two images
            with the same id, or no image at all.
    """
    root = Path(root)
    problems: list[Problem] = []
    cases: dict[str, Case] = {}
    first_seen: dict[str, Path] = {}
    class_dirs, stray_images = _class_folders(root, problems)
    for label, folder in class_dirs:
        images, masks = _folder_files(folder, problems)
        for stem in sorted(images, key=_natural_key):
            if stem in first_seen:
                problems.append(
                    Problem(
                        "duplicate_id",
                        f"id {stem!r} is also used by {first_seen[stem]}",
                        path=images[stem],
                        case_id=stem,
                    )
                )
                continue
            first_seen[stem] = images[stem]
            mask_paths = tuple(p for _, p in sorted(masks.get(stem, [])))
            cases[stem] = Case(stem, images[stem], label, mask_paths, None)

    if not cases and not problems:
        hint = ""
        if stray_images:
            hint = f"; it holds {stray_images} image files directly, so it may be one class folder: pass its parent"
        problems.append(
            Problem(
                "empty_dataset",
                f"no images found in class folders {list(CLASS_NAMES)}{hint}",
                path=root,
            )
        )
    if problems:
        raise DataError(problems)
    return cases


def _class_folders(root: Path, problems: list[Problem]) -> tuple[list[tuple[str, Path]], int]:
    """The class folders under ``root`` with their class, and how many image files lie loose beside them."""
    class_dirs = []
    stray_images = 0
    for entry in sorted(root.iterdir()):
        if _is_hidden(entry):
            continue
        if entry.is_dir():
            label = normalize_label(entry.name)
            if label is None:
                problems.append(
                    Problem(
                        "unknown_class_folder",
                        f"folder {entry.name!r} is not a class; expected one of {list(CLASS_NAMES)}",
                        path=entry,
                    )
                )
            else:
                class_dirs.append((label, entry))
        elif entry.suffix.lower() in IMAGE_EXTENSIONS:
            stray_images += 1
    return class_dirs, stray_images


def _folder_files(folder: Path, problems: list[Problem]) -> tuple[dict[str, Path], dict[str, list[tuple[int, Path]]]]:
    """One class folder's images by stem and masks by their image's stem (numbered ``_mask_k``)."""
    images: dict[str, Path] = {}
    masks: dict[str, list[tuple[int, Path]]] = {}
    for f in sorted(folder.iterdir()):
        if _is_hidden(f) or not f.is_file() or f.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        m = _MASK_STEM.match(f.stem)
        if m:
            masks.setdefault(m["stem"], []).append((int(m["k"] or 0), f))
            continue
        if f.stem in images:
            problems.append(
                Problem(
                    "duplicate_id",
                    f"id {f.stem!r} is used by two images: {images[f.stem].name} and {f.name}",
                    path=f,
                    case_id=f.stem,
                )
            )
            continue
        images[f.stem] = f
    for stem, found in sorted(masks.items()):
        if stem not in images:
            for _, mask_path in found:
                problems.append(
                    Problem("mask_without_image", f"mask has no image {stem}.<png|jpg|bmp> beside it", path=mask_path)
                )
    return images, masks


def read_manifest(csv_path: str | Path) -> dict[str, Case]:
    """Read a manifest CSV into cases.

    Columns: ``image`` and ``label`` (required); ``mask`` (several paths separated
    by ``;``), ``group``, ``id``, ``site`` and ``device`` (optional). Paths are relative to the CSV's
    folder unless absolute. Without an ``id`` column the id is the image path
    relative to the CSV folder, without its extension.

    Raises:
        DataError: On a missing column, unknown label, missing file, duplicate id
            or an empty manifest; each problem names the row and file.
    """
    csv_path = Path(csv_path)
    table = _read_manifest_table(csv_path)
    base = csv_path.parent
    problems: list[Problem] = []
    cases: dict[str, Case] = {}
    for i, row in enumerate(table.to_dict("records")):
        line = i + 2  # 1-based, after the header line
        image_rel = row["image"].strip()
        if not image_rel:
            problems.append(Problem("bad_manifest", f"row {line}: empty `image`", path=csv_path))
            continue
        image = (base / image_rel).resolve() if not Path(image_rel).is_absolute() else Path(image_rel)
        label = normalize_label(row["label"])
        if label is None:
            problems.append(
                Problem(
                    "unknown_label",
                    f"row {line}: label {row['label']!r} is not one of {list(CLASS_NAMES)}",
                    path=csv_path,
                )
            )
        if not image.is_file():
            problems.append(
                Problem("missing_file", f"row {line} of {csv_path.name}: image file does not exist", path=image)
            )
        mask_paths = _row_masks(row, base, f"row {line} of {csv_path.name}", problems)
        case_id = str(row.get("id", "")).strip() or Path(image_rel).with_suffix("").as_posix()
        if case_id in cases:
            problems.append(
                Problem(
                    "duplicate_id",
                    f"row {line}: id {case_id!r} is already used by {cases[case_id].image}",
                    path=image,
                    case_id=case_id,
                )
            )
            continue
        if label is not None:
            group, site, device = (str(row.get(k, "")).strip() or None for k in ("group", "site", "device"))
            cases[case_id] = Case(case_id, image, label, tuple(mask_paths), group, site, device)
    if not cases and not problems:
        problems.append(Problem("empty_dataset", "manifest has no rows", path=csv_path))
    if problems:
        raise DataError(problems)
    return dict(sorted(cases.items(), key=lambda kv: _natural_key(kv[0])))


def _read_manifest_table(csv_path: Path) -> pd.DataFrame:
    """The manifest as strings with lower-case column names.

    Raises:
        DataError: If it cannot be parsed or lacks a required column.
    """
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(Problem("bad_manifest", f"cannot parse manifest: {e}", path=csv_path)) from e
    table.columns = [str(c).strip().lower() for c in table.columns]
    missing = [c for c in MANIFEST_REQUIRED if c not in table.columns]
    if missing:
        raise DataError(
            Problem(
                "bad_manifest",
                f"manifest must have columns {list(MANIFEST_REQUIRED)} (optional "
                f"{list(MANIFEST_OPTIONAL)}); missing {missing}, found {list(table.columns)}",
                path=csv_path,
            )
        )
    return table


def _row_masks(row: dict[str, str], base: Path, where: str, problems: list[Problem]) -> list[Path]:
    """A manifest row's mask paths (``;``-separated, relative to ``base``), each missing file a problem."""
    mask_paths: list[Path] = []
    for part in str(row.get("mask", "")).split(";"):
        part = part.strip()
        if not part:
            continue
        mp = Path(part) if Path(part).is_absolute() else (base / part).resolve()
        if not mp.is_file():
            problems.append(Problem("missing_file", f"{where}: mask file does not exist", path=mp))
        mask_paths.append(mp)
    return mask_paths


MASKED_TASKS = ("seg", "joint")
"""Tasks that learn (and score) a lesion mask: every lesion image needs its mask file."""


def check_lesion_masks(
    cases: Sequence[Case], task: str, leave_out: bool, where: str, crop: str = "frame"
) -> tuple[list[Case], list[str]]:
    """The cases a ``task`` run may use, and the ids of lesion images left out for having no mask.

    A benign or malignant image without a mask file would otherwise train (and score) as "no lesion",
    and a lesion classifier (``crop="lesion"``) could not place its crop. For ``cls`` on whole frames
    every case is kept.

    Args:
        cases: The cases to train or score.
        task: ``seg``, ``cls`` or ``joint``.
        leave_out: Leave lesion images without a mask out (their ids are returned) instead of raising.
        where: The dataset, for the messages.
        crop: The run's ``--crop``; ``lesion`` needs the masks as ``seg`` does.

    Raises:
        ValueError: If no case has a mask file at all (one line: the dataset is for classification).
        DataError: If lesion images lack their mask and ``leave_out`` is off, naming every file.
    """
    if task not in MASKED_TASKS and crop != "lesion":
        return list(cases), []
    run = f"--task {task}" + (" --crop lesion" if crop == "lesion" else "")
    if not any(c.masks for c in cases):
        frame = "--task cls" if crop == "frame" else "--task cls on whole frames"
        raise OptionError(f"{run} needs lesion masks and {where} has no mask file: it can train {frame}")
    missing = [c for c in cases if c.label in LESION_CLASSES and not c.masks]
    if missing and not leave_out:
        raise DataError(
            [
                Problem(
                    "missing_mask",
                    f"{c.label} image has no mask: {run} "
                    + ("cannot place its crop" if crop == "lesion" else "would learn it as 'no lesion'")
                    + "; add its mask, or pass --leave-out-unmasked to leave such images out",
                    path=c.image,
                    case_id=c.case_id,
                )
                for c in missing
            ]
        )
    left = {c.case_id for c in missing}
    return [c for c in cases if c.case_id not in left], sorted(left, key=_natural_key)
