"""The hub dies after committing a step but before applying it: the restarted hub applies it —
also when it died between the zone commits and the mesh commit (the step is not decided again)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from federation import specfiles
from federation.core import spec as specs
from federation.core.state import CheckResult, Phase, SetWeights
from federation.core.weights import subsets_for
from federation.demo import run as demo_run
from federation.demo.fleet import LocalFleet
from federation.hub import parts as hub_parts
from federation.hub.store import FileStore
from federation.hub.worker import RolloutWorker
from federation.routers import envoy as envoy_router
from federation.runtimes.routes import EdgeRoute
from tests import gitlog

pytestmark = pytest.mark.e2e


async def observe_zones(parts: hub_parts.Parts, canary: specs.FederatedCanary, step: int) -> dict:
    return {z: await parts.zones[z].observe(canary, step) for z in ("eks", "onprem", "vms")}


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
            ad = hub_parts.build(f, tmp_path / "hub")
            try:
                await ad.sync()
                canary = (await ad.canaries())[key][1]
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
                record, message = ad.executor.record(canary, action)
                for z in ("eks", "onprem", "vms"):
                    await ad.zones[z].commit(canary, record, message)
                await ad.executor.commit_mesh(canary, record, message)
                assert await ad.route.live_step(key, "frontend", 0) == step - 1
                # A new hub process: fresh adapters, fresh worker, same state dir.
                ad2 = hub_parts.build(f, tmp_path / "hub2")
                try:
                    await ad2.sync()
                    worker2 = RolloutWorker(key, ad2, store)
                    report = await worker2.tick(canary)
                    assert not report.error
                    assert store.read(key).step == step and store.read(key).canary_weight == 2500
                    assert isinstance(ad2.route, EdgeRoute)
                    assert envoy_router.step_of(await ad2.route.edge.version_text("frontend"), key) == step
                    statuses = await observe_zones(ad2, canary, step)
                    for _ in range(100):
                        if all(s.applied_step() == step for s in statuses.values()):
                            break
                        await asyncio.sleep(0.2)
                        statuses = await observe_zones(ad2, canary, step)
                    assert {z: s.applied_step() for z, s in statuses.items()} == {"eks": step, "onprem": step, "vms": step}
                finally:
                    await ad2.close()
            finally:
                await ad.close()

        asyncio.run(scenario())
    finally:
        fleet.stop()


def test_killed_between_the_zone_commits_and_the_mesh_commit_the_step_is_not_decided_again(tmp_path: Path):
    """The zones hold step N (with its analysis figures), the mesh repo only N-1: the restarted hub
    adopts the zones' step and writes the mesh commit with the very same record, figures included."""
    fleet = LocalFleet(tmp_path / "fleet")
    fleet.prepare()
    try:
        fleet.start()
        demo_run.release(fleet, demo_run.canary_doc(demo_run.Pace.fast(), ("v1", ["vms"]), ("v2", ["eks", "onprem"])),
                         "release v2")
        f = specfiles.load_one(fleet.fleet_file, specs.Fleet)
        store = FileStore(tmp_path / "state")
        key = "shop/frontend"

        async def scenario() -> int:
            ad = hub_parts.build(f, tmp_path / "hub")
            try:
                await ad.sync()
                canary = (await ad.canaries())[key][1]
                assert canary is not None
                worker = RolloutWorker(key, ad, store)
                for _ in range(200):  # until the rollout's first step (0%) is applied everywhere
                    st = (await worker.tick(canary)).decision.status
                    if st.phase is Phase.PROGRESSING and st.converged_at is not None:
                        break
                    await asyncio.sleep(0.2)
                step = store.read(key).step + 1
                checks = (CheckResult("request-success-rate", None, 99.87, "pass"),
                          CheckResult("request-success-rate", "eks", 99.81, "pass"))
                action = SetWeights(step, "analysis", 2000, 0, False,
                                    tuple(sorted(subsets_for(canary.spec, 2000, f).items())), reason="crash test",
                                    checks=checks)
                record, message = ad.executor.record(canary, action)
                for z in ("eks", "onprem", "vms"):  # the zone commits; the hub dies before the mesh commit
                    await ad.zones[z].commit(canary, record, message)
            finally:
                await ad.close()
            ad2 = hub_parts.build(f, tmp_path / "hub2")
            try:
                await ad2.sync()
                canary = (await ad2.canaries())[key][1]
                assert canary is not None
                report = await RolloutWorker(key, ad2, store).tick(canary)
                assert not report.error, report.error
            finally:
                await ad2.close()
            return step

        step = asyncio.run(scenario())
        assert store.read(key).step >= step
        mesh = {c["Step"]: c for c in gitlog.commits(fleet.git_url("mesh")) if c.get("Rollout") == key}
        zone = {c["Step"]: c for c in gitlog.commits(fleet.git_url("eks")) if c.get("Rollout") == key}
        ours = {k: v for k, v in mesh[str(step)].items() if k not in ("sha", "subject")}
        assert ours == {k: v for k, v in zone[str(step)].items() if k not in ("sha", "subject")}
        assert ours["Analysis"] == "request-success-rate@global=99.87:pass; request-success-rate@eks=99.81:pass"
        assert ours["Canary-Weight"] == "2000"
    finally:
        fleet.stop()
