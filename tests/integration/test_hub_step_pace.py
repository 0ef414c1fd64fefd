"""How soon a running hub sees a step applied (the real Hub, worker and core; in-memory zones that
apply at once): the worker looks again shortly after a step, not a whole tick later, then less
often while the step takes longer; a failing step is retried at the tick."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from federation.core.decide import target_of
from federation.core.state import Phase, RolloutStatus
from federation.hub.service import Hub
from federation.hub.store import MemoryStore
from tests import hubfakes

KEY = "shop/frontend"
TICK = 3.0


def test_a_step_applied_at_once_is_seen_converged_well_within_a_tick(tmp_path: Path):
    c = hubfakes.canary(interval="1s")
    adapters = hubfakes.MemoryParts(hubfakes.fleet(), [c])
    adapters.applied[KEY] = 2
    store = MemoryStore()
    hub = Hub(hubfakes.fleet(), tmp_path / "hub", tick=TICK, discover_every=1.0, store=store, parts=adapters)

    async def go() -> RolloutStatus:
        now = time.time()
        await store.save(KEY, RolloutStatus(
            phase=Phase.PROGRESSING, primary_version="v1", canary_version="v2", target=target_of(c.spec),
            canary_weight=2000, step=2, pre_rollout_passed=True, step_started_at=now - 5, converged_at=now - 5,
            next_analysis_at=now, started_at=now - 5, message="canary 20%"))
        task = asyncio.create_task(hub.run())
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                st = await store.load(KEY)
                if st.step == 3 and st.converged_at is not None:
                    return st
                await asyncio.sleep(0.05)
            raise AssertionError(f"step 3 not seen converged within 30 s: {await store.load(KEY)}")
        finally:
            hub.stop()
            await asyncio.wait_for(task, 30)

    st = asyncio.run(go())
    assert st.step_started_at is not None and st.converged_at is not None
    # Before, the worker slept a whole tick after every step before looking (3 s here).
    assert st.converged_at - st.step_started_at < TICK / 2, (st.step_started_at, st.converged_at)


def test_the_look_after_a_step_backs_off_to_the_tick(tmp_path: Path):
    c = hubfakes.canary(interval="1s")
    hub = Hub(hubfakes.fleet(), tmp_path / "hub", tick=TICK, store=MemoryStore(),
              parts=hubfakes.MemoryParts(hubfakes.fleet(), [c]))
    try:
        now = time.time()
        converging = RolloutStatus(phase=Phase.PROGRESSING, step=3, step_started_at=now, converged_at=None)
        assert hub._pace(c, converging) <= 0.1
        assert 0.9 <= hub._pace(c, converging.with_(step_started_at=now - 2)) <= 1.1
        assert hub._pace(c, converging.with_(step_started_at=now - 60)) == TICK
    finally:
        hub.lock.release()
