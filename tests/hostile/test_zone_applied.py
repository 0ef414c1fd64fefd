"""The hub counts a VM zone applied only when its agents report the desired state the hub sent:
when an agent's step guard refuses a desired state (another rollout's newer step is stored), the
zone is not applied and the reason says why. The agent side is the agent's own protocol handler
and state directory (its real step guard); it converges instantly."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from federation.runtimes.ssh import Target
from federation.runtimes.vm import VmAgents
from tests import fleets
from vmagent import protocol, state


class InstantAgent:
    """A protocol backend over a real state directory whose agent applies what it stores at once."""

    def __init__(self, root: Path) -> None:
        self.state = state.StateDir(str(root))

    def apply(self, desired: Any) -> Any:
        return self.state.accept(desired)

    def status(self) -> Any:
        d = self.state.desired() or {}
        return {"step": d.get("step"), "revision": d.get("revision"), "applied_step": d.get("step"),
                "applied_revision": d.get("revision"), "versions": {}, "health": "ok"}


class LocalPool:
    """``runtimes.ssh.Pool``'s ``call`` without SSH: one JSON request line through the agent's handler."""

    def __init__(self, backend: InstantAgent) -> None:
        self.backend = backend
        self.call_timeout = 5.0

    async def call(self, t: Target, op: str, _call_timeout: float | None = None, **payload: Any) -> dict[str, Any]:
        line = json.dumps({"protocol": 1, "op": op, **payload})
        return json.loads(protocol.encode(protocol.handle(line, self.backend)))


def test_a_refused_desired_state_does_not_count_as_applied(tmp_path: Path):
    zone = fleets.fleet([fleets.vm_zone("vms")]).zone("vms")
    pool = LocalPool(InstantAgent(tmp_path / "agent"))
    first = VmAgents(zone, pool)  # type: ignore[arg-type]
    second = VmAgents(zone, pool)  # type: ignore[arg-type]

    async def scenario() -> None:
        manifests: list[Any] = []
        await first.apply("a" * 40, 5, manifests)
        assert (await first.observe()).applied_step() == 5
        await second.apply("b" * 40, 3, manifests)  # refused by the agent's step guard
        seen = await second.observe()
        assert seen.applied_step() is None
        assert "not the desired state sent (bbbbbbbbbbbb at step 3)" in seen.hosts[0].error
        assert (await first.observe()).applied_step() == 5  # the other rollout is unaffected

    asyncio.run(scenario())
