"""The one owner of rich: tables, JSON/YAML output and error lines for every ``fedctl`` command."""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from federation import specfiles

# Piped output gets a wide fixed width so tables are not truncated for scripts and logs.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
errors = Console(stderr=True, highlight=False, soft_wrap=True)


class Format(str, enum.Enum):
    table = "table"
    json = "json"
    yaml = "yaml"


def error(line: str) -> None:
    """One problem, one plain line on stderr (no markup, no traceback)."""
    errors.print(line, markup=False)


def info(line: str) -> None:
    console.print(line, markup=False)


def raw(text: str) -> None:
    """Text for machines (YAML, JSON): straight to stdout, untouched."""
    sys.stdout.write(text)


def markup(line: str) -> None:
    console.print(line)


def emit(data: Any, fmt: Format, columns: Sequence[str] = (), rows: Sequence[Sequence[Any]] = (),
         title: str | None = None) -> None:
    """Print ``data`` as JSON or YAML, or ``columns``/``rows`` as a table."""
    if fmt is Format.json:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    elif fmt is Format.yaml:
        sys.stdout.write(specfiles.dump([data]))
    else:
        table = Table(title=title, show_lines=False)
        for c in columns:
            table.add_column(c, justify="right" if c.endswith("%") or c in ("step", "#") else "left")
        for r in rows:
            table.add_row(*[str(x) for x in r])
        console.print(table)
