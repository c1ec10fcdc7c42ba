"""What every command-line entry point shares: TensorFlow's CPU kernels, one-line user errors, ``run(**overrides)``.

Used by the top-level scripts and by ``python -m data`` / ``python -m pipeline``, each of
which imports this module before anything imports TensorFlow.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from core.errors import OptionError, UserError

ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"


def prefer_onednn() -> None:
    """Turn on TensorFlow's oneDNN CPU kernels unless the user has set ``TF_ENABLE_ONEDNN_OPTS``.

    TensorFlow reads the variable once, when it is first imported, and left oneDNN off on the
    project's 2-core AMD EPYC machines (no AVX-512), where it trains the default U-Net about
    twice as fast (BENCHMARKS.md, 'Training step against the CPU's peak'). It only
    changes CPU kernels, so GPU training is unaffected; ``TF_ENABLE_ONEDNN_OPTS=0`` opts out.
    """
    os.environ.setdefault(ONEDNN_ENV, "1")


prefer_onednn()  # at import: the scripts import this module before TensorFlow

POSTPROCESS_HELP = "segmentation: largest keeps the largest lesion of each mask and fills its holes (default: none)"

USER_ERRORS = (UserError,)
"""Errors caused by what the user passed (:mod:`core.errors`): reported in one line, never as a traceback.
Any other exception, a ``ValueError`` from inside Keras or a bug of ours, keeps its traceback (exit 1)."""


def exit_on_user_error(fn: Callable[[], object], also: tuple[type[BaseException], ...] = ()) -> int:
    """Run a command; return its exit status, or 2 after printing a user error to stderr.

    Args:
        fn: The command's work. An ``int`` result is its exit status; anything else means 0.
        also: More exception types the command reports in one line (e.g. an unreachable server).
    """
    try:
        result = fn()
    except USER_ERRORS + also as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0


def with_overrides(args: Any, overrides: dict[str, Any]) -> Any:
    """Set parsed flags from keyword arguments (a script's ``run(**overrides)``); unknown names raise.

    Raises:
        ValueError: If a name is not one of the parser's options.
    """
    for key, value in overrides.items():
        if not hasattr(args, key):
            raise OptionError(f"unknown option {key!r}; valid: {sorted(vars(args))}")
        setattr(args, key, value)
    return args
