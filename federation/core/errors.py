"""Our own error tree. Adapters convert library errors into these at their owner module.

Callers: every room. The CLI turns any ``FederationError`` into one line on stderr.
"""

from __future__ import annotations

from dataclasses import dataclass


class FederationError(Exception):
    """Base of every error a user may see; ``str()`` is the one line to show."""


@dataclass(frozen=True)
class Problem:
    """One problem in one input file, located by a dotted field path."""

    file: str
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.field}: " if self.field else f"{self.file}: "
        return where + self.message


class SpecError(FederationError):
    """One or more problems in user-supplied specs; nothing was applied."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class TemporaryError(FederationError):
    """An outside system failed in a way that may pass; retry after ``delay`` seconds."""

    def __init__(self, message: str, delay: float = 1.0) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(FederationError):
    """An outside system refused in a way retrying will not fix."""
