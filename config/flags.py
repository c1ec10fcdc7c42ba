"""``train.py``'s command line, generated from :class:`config.train.TrainConfig`'s fields.

Each field is one kebab-case flag (``img_size`` -> ``--img-size``) with the help, choices and
tasks of its metadata (:func:`config.train.option`): a tuple is ``nargs="+"``, a bool (or
``bool | None``) a ``--x/--no-x`` pair, anything else takes the field's type. Flags that are not
part of the config (``--resume``, ``--exist-ok``) are the script's own.
"""

from __future__ import annotations

import argparse
import importlib
import typing
from dataclasses import MISSING, Field, fields
from typing import Any

from config.train import TASKS, TrainConfig, device_img_size
from core.errors import OptionError

SITE_FOLD = "site:"


def loss_names() -> list[str]:
    """Every ``--loss`` choice: the segmentation losses, then the classification losses."""
    from losses.classification import CLS_LOSSES
    from losses.segmentation import SEG_LOSSES

    return [*SEG_LOSSES, *CLS_LOSSES]


def flag_name(f: Field) -> str:
    """``--kebab-case`` of a field."""
    return "--" + f.name.replace("_", "-")


def config_fields() -> list[Field]:
    """The fields that have a flag (all but those set from another flag)."""
    return [f for f in fields(TrainConfig) if not f.metadata.get("no_flag")]


def resolve_choices(choices: Any) -> list | tuple | None:
    """A field's choices: as given, or looked up from ``"module:attribute"`` (called when callable)."""
    if not isinstance(choices, str):
        return choices
    module, attr = choices.split(":")
    value = getattr(importlib.import_module(module), attr)
    return list(value() if callable(value) else value)


def _help(f: Field) -> str:
    tasks = f.metadata.get("tasks", TASKS)
    text = f.metadata["help"]
    return text if tuple(tasks) == TASKS else f"{', '.join(tasks)}: {text}"


def _add_flag(p: argparse.ArgumentParser, f: Field, hints: dict[str, Any]) -> None:
    meta, hint = f.metadata, hints[f.name]
    default = meta.get("cli_default", f.default if f.default is not MISSING else None)
    kwargs: dict[str, Any] = {"help": _help(f), "default": default, "dest": f.name}
    choices = resolve_choices(meta.get("choices"))
    if choices is not None:
        kwargs["choices"] = choices
    args = typing.get_args(hint)
    if hint is bool or set(args) == {bool, type(None)}:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(hint) is tuple:
        kwargs.update(nargs="+", default=list(default), type=args[0])
    else:
        kwargs["type"] = meta.get("type") or next((a for a in args if a is not type(None)), hint)
    p.add_argument(flag_name(f), **kwargs)


def add_config_flags(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add a flag for every :class:`TrainConfig` field to ``p``."""
    hints = typing.get_type_hints(TrainConfig)
    for f in config_fields():
        _add_flag(p, f, hints)
    return p


def fold_values(flag: str) -> dict[str, Any]:
    """``fold`` and ``holdout_site`` from ``--fold`` (an index, ``all``, or ``site:NAME``).

    Raises:
        ValueError: If the value is none of these, or ``site:`` names no site.
    """
    fold = str(flag).strip()
    if fold.lower().startswith(SITE_FOLD):
        site = fold[len(SITE_FOLD) :].strip()
        if not site:
            raise OptionError(f"`--fold site:NAME` needs a site name. Received: --fold {flag}")
        return {"fold": 0, "holdout_site": site}
    if fold.lower() != "all" and not fold.lstrip("-").isdigit():
        raise OptionError(f"`--fold` must be a fold index, 'all' or site:NAME. Received: --fold {flag}")
    return {"fold": -1 if fold.lower() == "all" else int(fold)}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Turn parsed flags into the run's frozen config: every :class:`TrainConfig` field from its flag.

    Flags that are no field (a script's own, such as ``--resume``) are left out. Without ``--img-size``
    the size is the task's default on this machine (:func:`config.train.device_img_size`).

    Raises:
        ValueError: If a config field has no flag, or ``--fold`` is not an index, 'all' or site:NAME.
    """
    names = {f.name for f in config_fields()}
    missing = sorted(names - set(vars(args)))
    if missing:
        raise ValueError(f"train.py's flags and TrainConfig's fields differ: no flag for {missing}")
    values = {name: getattr(args, name) for name in names}
    values.update(fold_values(args.fold))
    values["classes"] = tuple(args.classes)
    if values["img_size"] is None:
        values["img_size"] = device_img_size(values["task"])
    return TrainConfig(**values)
