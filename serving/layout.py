"""TF Serving's model layout: ``<root>/<name>/<version>/`` and a ``models.config`` for all of them."""

from __future__ import annotations

import re
from pathlib import Path

from core.atomic import write_text
from core.errors import OptionError

MODELS_CONFIG = "models.config"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_name(name: str) -> str:
    """Return ``name`` if it can be a served model's name (it appears in URLs).

    Raises:
        ValueError: If it holds other characters than letters, digits, ``_``, ``.`` and ``-``.
    """
    if not _NAME.fullmatch(name):
        raise OptionError(f"`name` must be letters, digits, '_', '.' or '-'. Received: name={name!r}")
    return name


def versions(model_dir: Path) -> list[int]:
    """Numeric version folders of one model, ascending (what TF Serving would load)."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def next_version(model_dir: Path) -> int:
    """One more than the highest existing version, or 1."""
    found = versions(model_dir)
    return found[-1] + 1 if found else 1


def models_config_text(root: Path, base_path: str = "/models") -> str:
    """A ``--model_config_file`` listing every model under ``root`` that has a version.

    ``base_path`` is where ``root`` is mounted inside the serving container.
    """
    lines = ["model_config_list {"]
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and versions(p)):
        lines += [
            "  config {",
            f'    name: "{model_dir.name}"',
            f'    base_path: "{base_path.rstrip("/")}/{model_dir.name}"',
            '    model_platform: "tensorflow"',
            "  }",
        ]
    return "\n".join(lines + ["}"]) + "\n"


def write_models_config(root: Path, base_path: str = "/models") -> Path:
    """(Re)write ``root/models.config`` for every exported model."""
    return write_text(root / MODELS_CONFIG, models_config_text(root, base_path))
