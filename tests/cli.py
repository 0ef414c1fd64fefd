"""``fedctl`` in-process for tests: the real entry point (``federation.cli.main.run``: argument
parsing, error mapping, exit codes) with stdout and stderr captured by click's test isolation.
A few tests still run the installed console script, to check the entry point itself."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from federation.cli import main

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def fedctl(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> Result:
    code = 0
    with CliRunner().isolation(env={"COLUMNS": "200", **(env or {})}) as (out, err, _), contextlib.chdir(cwd):
        try:
            main.run(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        return Result(code, out.getvalue().decode(), err.getvalue().decode())


def installed() -> str:
    """The console script installed beside this interpreter (``make install``)."""
    return str(Path(sys.executable).parent / "fedctl")
