"""Operator commands on a running hub (the real Hub, worker, core and API; in-memory zones): each
command wakes the rollout's worker and the API answers with what it did or why it was refused;
status pairs the stored step with the spec it belongs to."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from federation.core.decide import target_of
from federation.core.state import Phase, RolloutStatus
from federation.hub import views
from federation.hub.api import app_for
from federation.hub.service import Hub
from federation.hub.store import MemoryStore
from tests import hubfakes

TOKEN = "t" * 32
KEY = "shop/frontend"


async def until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: not after {timeout:g}s")


def run_hub(tmp_path: Path, scenario: Callable[[Hub, httpx.AsyncClient, hubfakes.MemoryParts], Awaitable[None]],
            interval: str = "10m") -> None:
    """``scenario`` against a hub whose rollout is at 20% (step 2), converged, its worker asleep
    until the next analysis (``interval`` away)."""
    c = hubfakes.canary(interval=interval)
    adapters = hubfakes.MemoryParts(hubfakes.fleet(), [c])
    adapters.applied[KEY] = 2
    store = MemoryStore()
    now = time.time()
    hub = Hub(hubfakes.fleet(), tmp_path / "hub", tick=0.05, discover_every=1.0, store=store, parts=adapters)

    async def go() -> None:
        await store.save(KEY, RolloutStatus(
            phase=Phase.PROGRESSING, primary_version="v1", canary_version="v2", target=target_of(c.spec),
            canary_weight=2000, step=2, pre_rollout_passed=True, step_started_at=now, converged_at=now,
            next_analysis_at=now + c.spec.analysis.interval_seconds, started_at=now, message="canary 20%"))
        task = asyncio.create_task(hub.run())
        transport = httpx.ASGITransport(app=app_for(hub, TOKEN))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://hub",
                                         headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as client:
                await until(lambda: _ticked(hub), 60, "the worker's first tick")
                await scenario(hub, client, adapters)
        finally:
            hub.stop()
            await asyncio.wait_for(task, 30)

    asyncio.run(go())


async def _ticked(hub: Hub) -> bool:
    return KEY in hub.last


async def _status(hub: Hub) -> RolloutStatus:
    return await hub.store.load(KEY)


def test_commands_wake_the_worker_and_answer_what_they_did(tmp_path: Path):
    async def scenario(hub: Hub, client: httpx.AsyncClient, adapters: hubfakes.MemoryParts) -> None:
        before = await _status(hub)
        assert before.phase is Phase.PROGRESSING and before.step == 2
        r = await client.post(f"/api/v1/rollouts/{KEY}/pause")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["state"] == "accepted" and body["message"].startswith("paused at step"), body
        assert (await _status(hub)).paused
        # Refused, with the reason, and nothing changes.
        r = await client.post(f"/api/v1/rollouts/{KEY}/pause")
        assert r.status_code == 409 and r.json()["message"] == "already paused"
        r = await client.post(f"/api/v1/rollouts/{KEY}/promote")
        assert r.status_code == 409 and "resume first" in r.json()["message"]
        r = await client.post(f"/api/v1/rollouts/{KEY}/resume")
        assert r.status_code == 200 and r.json()["state"] == "accepted", r.text
        r = await client.post(f"/api/v1/rollouts/{KEY}/promote")
        assert r.status_code == 200 and r.json()["message"].startswith("promoting"), r.text
        assert (await _status(hub)).phase is Phase.PROMOTING
        r = await client.post(f"/api/v1/rollouts/{KEY}/abort")
        assert r.status_code == 200 and r.json()["message"].startswith("rolled back"), r.text
        after = await _status(hub)
        assert after.phase is Phase.FAILED and after.canary_weight == 0
        # Every command took effect long before the analysis the worker was sleeping until.
        assert time.time() < (before.next_analysis_at or 0)
        assert adapters.actions[-1][2].stage == "rollback"
        r = await client.post(f"/api/v1/rollouts/{KEY}/abort")
        assert r.status_code == 409 and r.json()["message"] == "abort ignored: phase Failed"
        r = await client.post(f"/api/v1/rollouts/{KEY}/retry")
        assert r.status_code == 200 and r.json()["message"].startswith("started again"), r.text
        # Fire and forget: queued at once, consumed by the worker it woke.
        r = await client.post(f"/api/v1/rollouts/{KEY}/pause", params={"wait": 0})
        assert r.status_code == 202 and r.json()["state"] == "queued"

        async def paused() -> bool:
            return (await _status(hub)).paused
        await until(paused, 30, "queued pause consumed")

    run_hub(tmp_path, scenario)


def test_status_pairs_the_stored_step_with_its_own_spec(tmp_path: Path):
    """Between a new release's discovery and the tick that starts it, status describes the rollout
    the stored step belongs to (v1 -> v2 promoted), and names the new release as next."""
    first, second = hubfakes.canary(), hubfakes.canary(("v2", ["eks", "onprem"]), ("v3", ["eks"]))
    adapters = hubfakes.MemoryParts(hubfakes.fleet(), [second])
    store = MemoryStore()
    hub = Hub(hubfakes.fleet(), tmp_path / "hub", store=store, parts=adapters)
    async def go() -> dict[str, Any]:
        await store.save(KEY, RolloutStatus(phase=Phase.SUCCEEDED, primary_version="v2", canary_version="v2",
                                            target=target_of(first.spec), canary_weight=10000, step=9,
                                            message="promotion completed"))
        hub.canaries = {KEY: second}  # discovered; its worker has not ticked yet
        return await views.rollout(hub, KEY)

    try:
        view = asyncio.run(go())
    finally:
        hub.lock.release()
    assert view["canary"] == {"version": "v2", "zones": ["eks", "onprem"]}
    assert view["primary"] == {"version": "v1", "zones": ["vms"]}
    assert {k for k, w in view["weights"].items() if w} == {"eks/v2", "onprem/v2"}
    assert view["upToDate"] is False
    assert view["nextRelease"]["canary"] == {"version": "v3", "zones": ["eks"]}
