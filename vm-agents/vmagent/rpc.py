"""``fed-agent rpc``: the forced command behind OpenSSH (``command="fed-agent rpc ...",restrict``).

It answers requests on stdin from the state directory the running agent (``fed-agent run``) owns:
``apply`` stores the desired state atomically and the agent picks it up; ``status`` reads the
agent's last report. Whatever command the client asked for is ignored: this is all the key can do.
Standard library only.
"""

from __future__ import annotations

import os
import sys
import time

from vmagent import protocol, state
from vmagent.converge import drain_answer
from vmagent.protocol import ApplyAnswer, Desired, DrainAnswer, StatusAnswer


class StateDirBackend:
    def __init__(self, state_dir: str) -> None:
        self.state = state.StateDir(state_dir)

    def status(self) -> StatusAnswer:
        report = self.state.report()
        if report is None:
            return {"health": "unknown", "error": "the agent has not reported yet (is fed-agent run running?)"}
        return report  # type: ignore[return-value]  # what the running agent wrote: its status answer

    def apply(self, desired: Desired) -> ApplyAnswer:
        return self.state.accept(desired)

    def rollback(self) -> ApplyAnswer:
        return self.state.restore_previous()

    def drain(self, enable: bool, timeout: float) -> DrainAnswer:
        """Store the flag for the running agent, then wait (up to ``timeout``) for its report to
        show Envoy switched and, when draining, nothing in flight."""
        state.write_drain(self.state, enable)
        deadline = time.monotonic() + timeout
        while True:
            r = self.state.report() or {}
            picked_up = bool(r.get("draining")) == enable
            answer = drain_answer(enable, int(r.get("active_requests") or 0) if enable else 0, r.get("envoy_state"))
            if (picked_up and (not enable or answer["drained"])) or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        if not picked_up:
            answer["drained"] = False
            answer["pending"] = "the running agent has not picked the change up yet (is fed-agent run running?)"
        return answer


def main(state_dir: str) -> int:
    backend = StateDirBackend(state_dir)
    # Under a forced command, what the client asked to run is in SSH_ORIGINAL_COMMAND: it is only
    # ever read as one protocol request, never run.
    request = protocol.request_in_command(os.environ.get("SSH_ORIGINAL_COMMAND", ""))
    if request is not None:
        sys.stdout.write(protocol.encode(protocol.handle(request, backend)))
        sys.stdout.flush()
        return 0
    for line in protocol.read_lines(lambda n: os.read(sys.stdin.fileno(), n)):  # bounded lines, never held whole
        if line is None:
            sys.stdout.write(protocol.encode(protocol.TOO_LONG))
        elif not line.strip():
            continue
        else:
            sys.stdout.write(protocol.encode(protocol.handle(line, backend)))
        sys.stdout.flush()
    return 0
