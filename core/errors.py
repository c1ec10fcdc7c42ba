"""Problems found in a dataset, and the exception that carries them."""

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


class DataError(ValueError):
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
