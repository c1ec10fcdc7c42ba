"""The errors a user can cause, and the problems found in a dataset.

Every check of what a user gave (a flag, a file or folder they named, a dataset, a run folder) raises a
:class:`UserError`: the scripts print it in one line and exit with status 2 (:func:`cli.exit_on_user_error`).
Anything else, a ``ValueError`` from inside Keras or from our own code included, is a bug: it keeps its
traceback and exits with status 1. Each type also derives from the built-in one it stands for, so callers
may catch ``ValueError`` or ``FileNotFoundError`` as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file or case.

    Attributes:
        kind: Short machine-readable name, e.g. ``"unreadable_image"``.
        message: What is wrong, for a person.
        path: The file concerned (None for dataset-wide problems).
        case_id: The case concerned, when known.
    """

    kind: str
    message: str
    path: Path | None = None
    case_id: str | None = None

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path is not None else ""
        return f"{where}{self.message}"

    def to_dict(self) -> dict[str, str | None]:
        """Return the problem as a JSON-friendly dict."""
        return {
            "kind": self.kind,
            "case_id": self.case_id,
            "path": None if self.path is None else str(self.path),
            "message": self.message,
        }


class UserError(Exception):
    """Something the user gave cannot be used; the message says what was expected and what was received."""


class OptionError(UserError, ValueError):
    """A flag, option or argument value that is not allowed (or not with the others given)."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist, or is not what was asked for."""


class OutputExistsError(UserError, FileExistsError):
    """An output the user named exists already and is never overwritten."""


class StorageError(UserError, OSError):
    """A run's folder cannot be written (not a folder, no permission, no space left)."""


class RunFileError(UserError, ValueError):
    """A file of a run folder (its fitted gate, temperature or cut) cannot be read."""


class WeightsError(UserError, ValueError):
    """Pretrained weights cannot be found, read or trusted (a package missing, a file changed or unreadable)."""


class DataError(UserError, ValueError):
    """The dataset cannot be used as it is; ``problems`` lists every reason found."""

    def __init__(self, problems: list[Problem] | Problem | str) -> None:
        if isinstance(problems, str):
            problems = [Problem("invalid_data", problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        shown = self.problems[:20]
        lines = [str(p) for p in shown]
        if len(self.problems) > len(shown):
            lines.append(f"... and {len(self.problems) - len(shown)} more")
        head = "1 problem" if len(self.problems) == 1 else f"{len(self.problems)} problems"
        super().__init__(f"{head} in the dataset:\n  " + "\n  ".join(lines))
