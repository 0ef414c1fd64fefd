"""Processes the demo starts: each in its own process group, stopped by that group, also on failure.

Never by name: the supervisor keeps every child's pid and ends the group it leads (TERM, then KILL).
Callers: ``demo.fleet``, integration tests (through the same class).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("federation.demo")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Supervisor:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = Path(log_dir)
        self.procs: list[Proc] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
              outlive_parent: bool = False) -> Proc:
        """``outlive_parent``: the program kills itself when its parent dies (Envoy does): give it a
        keeper as parent (``demo.keeper``, same process group) so it survives this process's exit."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if outlive_parent:
            argv = [sys.executable, "-m", "federation.demo.keeper", *argv]
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as out:
            popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)
        p = Proc(name, popen, log_path)
        self.procs.append(p)
        log.debug("started %s (pid %d): %s", name, p.pid, " ".join(argv))
        return p

    def stop(self, p: Proc, grace: float = 5.0) -> None:
        if p.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
            try:
                p.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.popen.wait(timeout=5)
        # Children that outlived their leader still carry its group id: end them too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self) -> None:
        for p in reversed(list(self.procs)):
            self.stop(p)

    def pids(self) -> dict[str, int]:
        return {p.name: p.pid for p in self.procs}


def wait_for(check, timeout: float, what: str, interval: float = 0.1) -> None:  # type: ignore[no-untyped-def]
    """Poll ``check`` until true; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout:g}s")
