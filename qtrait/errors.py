"""Errors that qtrait reports to users as one clear line (no traceback)."""

from __future__ import annotations

from dataclasses import dataclass


class QtraitError(Exception):
    """A user-facing error: bad input, a missing file, an invalid option.

    The command line prints ``error: <message>`` and, when given, ``hint: <hint>``,
    and exits with status 2. Programming errors are *not* QtraitErrors and keep their
    traceback.
    """

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class Problem:
    """One problem found in a run directory or an input table.

    ``severity`` is ``"error"`` (the input cannot be used) or ``"notice"`` (reported,
    but the run is still valid, e.g. an incomplete last generation that readers ignore).
    """

    message: str
    file: str | None = None
    generation: int | None = None
    column: str | None = None
    severity: str = "error"

    def format(self) -> str:
        where = []
        if self.file is not None:
            where.append(self.file)
        if self.generation is not None:
            where.append(f"generation {self.generation}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        loc = ", ".join(where)
        return f"{self.severity}: {loc + ': ' if loc else ''}{self.message}"


class InvalidInputError(QtraitError):
    """Raised when a run or a table fails validation; carries every problem found."""

    def __init__(self, what: str, problems: list[Problem], hint: str | None = None):
        errors = [p for p in problems if p.severity == "error"]
        lines = "\n".join(p.format() for p in problems)
        super().__init__(f"{what}: {len(errors)} problem(s), one per line\n{lines}",
                         hint=hint or "nothing was modified")
        self.problems = problems
