"""Peak RSS of one command, measured from a small parent.

Linux carries a process's high-water RSS through fork and exec: a child's ``ru_maxrss`` starts at the
forking process's peak. ``wait4`` on a child forked straight from the test process — hundreds of MiB
after a long suite — therefore reports the test process's pages, not the child's (CI saw 410 MiB for a
``fedctl validate`` that needs 60). The command runs under a tiny Python parent that forks it, waits
for it and writes the child's ``ru_maxrss`` (KiB) to a file; it stands in for ``/usr/bin/time -f %M``,
which a fresh Debian machine does not have.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_PARENT = """
import os, sys
out, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(out, "w") as f:
    f.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


class Measured:
    """``subprocess.Popen`` of ``argv`` in its own session, under the small parent; ``peak_kib()``
    after it ended. Stop it on a timeout with ``kill()`` (the whole process group)."""

    def __init__(self, argv: Sequence[str], rss_file: Path, **popen: Any) -> None:
        self.rss_file = rss_file
        rss_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _PARENT, str(rss_file), *argv],
                                     start_new_session=True, **popen)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, 9)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def peak_kib(self) -> int:
        return int(self.rss_file.read_text())
