"""``fed-agent rpc``: the forced command behind OpenSSH (``command="fed-agent rpc ...",restrict``).

It answers requests on stdin from the state directory the running agent (``fed-agent run``) owns:
``apply`` stores the desired state atomically and the agent picks it up; ``status`` reads the
agent's last report. Whatever command the client asked for is ignored: this is all the key can do.
Standard library only.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from vmagent import protocol, state


class StateDirBackend:
    def __init__(self, state_dir: str) -> None:
        self.state = state.StateDir(state_dir)

    def status(self) -> dict[str, Any]:
        report = self.state.report()
        if report is None:
            return {"health": "unknown", "error": "the agent has not reported yet (is fed-agent run running?)"}
        return report

    def apply(self, desired: dict[str, Any]) -> dict[str, Any]:
        return self.state.accept(desired)

    def rollback(self) -> dict[str, Any]:
        return self.state.restore_previous()


def main(state_dir: str) -> int:
    backend = StateDirBackend(state_dir)
    # Under a forced command, what the client asked to run is in SSH_ORIGINAL_COMMAND: it is only
    # ever read as one protocol request, never run.
    request = protocol.request_in_command(os.environ.get("SSH_ORIGINAL_COMMAND", ""))
    if request is not None:
        sys.stdout.write(protocol.encode(protocol.handle(request, backend)))
        sys.stdout.flush()
        return 0
    for line in sys.stdin:
        if not line.strip():
            continue
        sys.stdout.write(protocol.encode(protocol.handle(line, backend)))
        sys.stdout.flush()
    return 0
