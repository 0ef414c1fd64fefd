"""The executor's order within a step (``hub.executor``): zones converge before the route is applied,
whatever the route; the mesh repo's record is committed alongside the zones' commits when that
commit applies nothing (the edge), and only after every zone when it does (Flux on the mesh repo)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from federation.core import spec as specs
from federation.core.errors import TemporaryError
from federation.core.state import SetWeights, Stage
from federation.core.steps import StepRecord
from federation.core.weights import Subset
from federation.hub.executor import Executor
from tests import hubfakes

ZONES = ("eks", "onprem", "vms")


class Events:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.mesh_started = asyncio.Event()

    def index(self, event: str) -> int:
        return self.seen.index(event)


class Zone:
    """A zone runtime whose commit lasts until the mesh record is being committed, or ``patience``
    seconds have passed (then it goes on: the order is what the test reads)."""

    pull_request = False

    def __init__(self, name: str, events: Events, patience: float, fail: bool = False) -> None:
        self.name, self.events, self.patience, self.fail = name, events, patience, fail
        self.repo: Any = None

    async def commit(self, canary: Any, record: StepRecord, message: str, branch: str | None = None) -> str | None:
        self.events.seen.append(f"commit {self.name}")
        try:
            await asyncio.wait_for(self.events.mesh_started.wait(), self.patience)
        except TimeoutError:
            pass
        if self.fail:
            raise TemporaryError(f"git push to {self.name} failed")
        self.events.seen.append(f"committed {self.name}")
        return f"sha-{self.name}"

    async def converge(self, step: int) -> None:
        self.events.seen.append(f"converged {self.name}")

    async def observe(self, canary: Any, step: int) -> Any:
        return hubfakes.ZoneSeen(self.name, step)


class Route:
    poll_seconds = 0.0

    def __init__(self, events: Events, applied_by_commit: bool) -> None:
        self.events, self.applied_by_commit = events, applied_by_commit

    def render(self, req: Any) -> list[dict[str, Any]]:
        return [{"step": req.step}]

    async def apply(self, docs: list[dict[str, Any]]) -> None:
        self.events.seen.append("route applied")

    async def live_step(self, rollout: str, service: str, step: int) -> int | None:
        return step


class RecordingExecutor(Executor):
    events: Events

    async def commit_mesh(self, canary: specs.FederatedCanary, rec: StepRecord,
                          message: str) -> tuple[list[dict[str, Any]], str | None]:
        self.events.seen.append("mesh commit")
        self.events.mesh_started.set()
        await asyncio.sleep(0)
        self.events.seen.append("mesh committed")
        return self.route.render(self.route_request(canary, rec)), "sha-mesh"


def run_step(applied_by_commit: bool, patience: float, fail: str = "") -> tuple[list[str], dict[str, str]]:
    async def go() -> tuple[list[str], dict[str, str]]:
        events = Events()
        zones = {z: Zone(z, events, patience, fail=z == fail) for z in ZONES}
        ex = RecordingExecutor(hubfakes.fleet(), zones, None, Route(events, applied_by_commit))  # type: ignore[arg-type]
        ex.events = events
        canary = hubfakes.canary()
        action = SetWeights(2, Stage.ANALYSIS, 2000, 0, False,
                            ((Subset("vms", "v1"), 8000), (Subset("eks", "v2"), 1333), (Subset("onprem", "v2"), 667)))
        try:
            result = await ex.apply_step(canary, action)
        except TemporaryError:
            return events.seen, {}
        return events.seen, result.commits
    return asyncio.run(go())


def test_the_edge_record_is_committed_alongside_the_zones_and_the_route_applied_after_them():
    seen, commits = run_step(applied_by_commit=False, patience=5.0)
    # The mesh commit began while every zone's commit was still under way (before, it waited for
    # all of them: a second Git commit and push on every step's critical path).
    assert seen.index("mesh commit") < min(seen.index(f"committed {z}") for z in ZONES), seen
    assert seen.index("route applied") > max(seen.index(f"converged {z}") for z in ZONES), seen
    assert seen.index("route applied") > seen.index("mesh committed")
    assert commits == {**{z: f"sha-{z}" for z in ZONES}, "mesh": "sha-mesh"}


def test_a_route_that_its_commit_applies_is_committed_only_after_every_zone_converged():
    seen, commits = run_step(applied_by_commit=True, patience=0.05)
    assert seen.index("mesh commit") > max(seen.index(f"converged {z}") for z in ZONES), seen
    assert seen[-1] == "route applied"
    assert commits["mesh"] == "sha-mesh"


@pytest.mark.parametrize("applied_by_commit", [False, True])
def test_a_zone_failing_its_commit_leaves_the_route_unapplied(applied_by_commit: bool):
    seen, _ = run_step(applied_by_commit=applied_by_commit, patience=0.05, fail="onprem")
    assert "route applied" not in seen and "converged onprem" not in seen, seen
    if not applied_by_commit:
        assert "mesh committed" in seen  # the record's commit finished (no Git work left running)
