"""Turn ``--source`` arguments (files, folders, globs) into a list of image files."""

from __future__ import annotations

import glob
import re
from collections.abc import Sequence
from pathlib import Path

from core.errors import MissingFileError
from data.imageio import IMAGE_EXTENSIONS

# BUSI-style ground-truth masks beside the images: ``<stem>_mask.png``, ``<stem>_mask_1.png``.
_MASK = re.compile(r".+_mask(?:_\d+)?$", re.IGNORECASE)


def _images_in(folder: Path) -> tuple[list[Path], int]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    images = [p for p in files if not _MASK.match(p.stem)]
    return images, len(files) - len(images)


def collect_sources(sources: Sequence[str]) -> tuple[list[Path], int]:
    """Image files named by ``sources``, in order, each once.

    A file is taken as given (an unreadable one becomes an error row later); a
    folder gives its image files (PNG, JPEG, BMP; not recursive), leaving out
    ground-truth masks named ``*_mask.png`` / ``*_mask_N.png``; anything else is
    a glob pattern (``**`` recurses).

    Returns:
        ``(files, skipped_masks)``.

    Raises:
        FileNotFoundError: If a source matches nothing; the message names it.
    """
    out: list[Path] = []
    skipped = 0
    for s in sources:
        p = Path(s)
        if p.is_file():
            found = [p]
        elif p.is_dir():
            found, n_masks = _images_in(p)
            skipped += n_masks
            if not found:
                raise MissingFileError(f"no PNG, JPEG or BMP images in folder {p}")
        else:
            found = sorted(Path(f) for f in glob.glob(s, recursive=True) if Path(f).suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise MissingFileError(f"`--source` {s!r} is not a file or folder and matches no images as a glob")
        out.extend(found)
    seen: set[Path] = set()
    unique = []
    for f in out:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, skipped
