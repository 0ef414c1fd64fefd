"""The hub dies after committing a step but before applying it: the restarted hub applies it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from federation import specfiles
from federation.core import spec as specs
from federation.core.state import Phase, SetWeights
from federation.core.weights import subsets_for
from federation.demo import run as demo_run
from federation.demo.fleet import LocalFleet
from federation.hub.fleet import MESH, FleetAdapters
from federation.hub.store import FileStore
from federation.hub.worker import RolloutWorker
from federation.routers import envoy as envoy_router

pytestmark = pytest.mark.e2e


def test_step_committed_but_not_applied_is_applied_after_restart(tmp_path: Path):
    fleet = LocalFleet(tmp_path / "fleet")
    fleet.prepare()
    try:
        fleet.start()
        demo_run.release(fleet, demo_run.canary_doc(demo_run.Pace.fast(), ("v1", ["vms"]), ("v2", ["eks", "onprem"])),
                         "release v2")
        f = specfiles.load_one(fleet.fleet_file, specs.Fleet)
        store = FileStore(tmp_path / "state")
        key = "shop/frontend"

        async def scenario() -> None:
            ad = FleetAdapters(f, tmp_path / "hub")
            try:
                await ad.sync()
                canary = ad.canaries()[key][1]
                assert canary is not None
                worker = RolloutWorker(key, ad, store)
                for _ in range(200):  # until the rollout's first step (0%) is applied everywhere
                    st = (await worker.tick(canary)).decision.status
                    if st.phase is Phase.PROGRESSING and st.converged_at is not None:
                        break
                    await asyncio.sleep(0.2)
                step = store.read(key).step + 1
                # The crash window: every repo holds step `step`, nothing was applied, status not saved.
                action = SetWeights(step, "analysis", 2500, 0, False,
                                    tuple(sorted(subsets_for(canary.spec, 2500, f).items())), reason="crash test")
                message = ad.message(canary, action)
                expect = {"Stage": "analysis", "Canary-Weight": "2500"}
                for z in ("eks", "onprem", "vms"):
                    await ad.commit(z, ad._edit_zone(z, canary, action), message, key, step, expect)
                await ad.commit(MESH, ad._edit_mesh(ad.route_request(canary, action)), message, key, step, expect)
                assert await ad.edge_step(key, "frontend") == step - 1
                # A new hub process: fresh adapters, fresh worker, same state dir.
                ad2 = FleetAdapters(f, tmp_path / "hub2")
                try:
                    await ad2.sync()
                    worker2 = RolloutWorker(key, ad2, store)
                    report = await worker2.tick(canary)
                    assert not report.error
                    assert store.read(key).step == step and store.read(key).canary_weight == 2500
                    assert envoy_router.step_of(await ad2.edge.version_text("frontend"), key) == step
                    statuses = await ad2.observe_zones(["eks", "onprem", "vms"], canary, step)
                    for _ in range(100):
                        if all(s.applied_step() == step for s in statuses.values()):
                            break
                        await asyncio.sleep(0.2)
                        statuses = await ad2.observe_zones(["eks", "onprem", "vms"], canary, step)
                    assert {z: s.applied_step() for z, s in statuses.items()} == {"eks": step, "onprem": step, "vms": step}
                finally:
                    await ad2.close()
            finally:
                await ad.close()

        asyncio.run(scenario())
    finally:
        fleet.stop()
