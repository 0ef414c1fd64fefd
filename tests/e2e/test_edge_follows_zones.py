"""The edge moves to a step only once every zone it sends to serves that step: a zone agent that was
only told to converge may not run the version yet, and the edge would send requests to an ingress
with nothing to route them to.

The chaos soak saw this as 503s ("no version serves here", or the zone's empty seed route) at the
first rollouts' step 1 through the vms zone, whose agent was SIGKILLed as the hub started: the
hub's apply never reached it (logged, not fatal) and the edge moved to vms anyway. Here the vms
agent is stopped (SIGSTOP) while the step is applied, then resumed. Real parts: the local demo
fleet (fed-agent over SSH, the zones' ingress Envoys, the edge Envoy) and the hub's parts."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx
import pytest

from federation import specfiles
from federation.core import spec as specs
from federation.core.state import SetWeights
from federation.core.weights import subsets_for
from federation.demo import run as demo_run
from federation.demo.fleet import LocalFleet
from federation.hub import parts as hub_parts

pytestmark = pytest.mark.e2e
KEY = "shop/frontend"


def test_the_edge_moves_only_once_the_zones_it_sends_to_serve_the_step(tmp_path: Path):
    fleet = LocalFleet(tmp_path / "fleet")
    fleet.prepare()
    try:
        fleet.start()
        demo_run.release(fleet, demo_run.canary_doc(demo_run.Pace.fast(), ("v1", ["vms"]), ("v2", ["eks", "onprem"])),
                         "release v2")
        f = specfiles.load_one(fleet.fleet_file, specs.Fleet)

        async def scenario() -> None:
            ad = hub_parts.build(f, tmp_path / "hub")
            try:
                await ad.sync()
                canary = (await ad.canaries())[KEY][1]
                assert canary is not None
                vms = await ad.zones["vms"].observe(canary, 1)
                assert vms.ready_percent("frontend", "v1") is None  # the agent runs nothing yet
                ad.zones["vms"].agents.pool.call_timeout, ad.zones["vms"].agents.pool.retries = 2.0, 0
                ad.executor.zone_timeout = 1.0
                weights = tuple(sorted(subsets_for(canary.spec, 0, f).items()))  # vms/v1 = 100%
                agent = fleet.agents["vms"].pid
                os.kill(agent, signal.SIGSTOP)  # the apply does not reach it
                try:
                    result = await ad.executor.apply_step(canary, SetWeights(1, "initialise", 0, 0, False, weights))
                finally:
                    os.kill(agent, signal.SIGCONT)
                # As the worker's ticks do: advance the step until the edge is at it. The first moment
                # the edge is at step 1, vms serves it: applied, and a request through the edge answered.
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 60
                while (await ad.route.live_step(KEY, "frontend", 1) or 0) < 1:
                    assert loop.time() < deadline, "the edge never reached step 1"
                    await ad.executor.advance(KEY)
                    await asyncio.sleep(0.1)
                async with httpx.AsyncClient(timeout=10) as c:
                    r = await c.get(fleet.edge_url, headers={"Connection": "close"})
                assert r.status_code == 200 and r.headers.get("x-version") == "v1", (r.status_code, r.text)
                assert (await ad.zones["vms"].observe(canary, 1)).applied_step() == 1
                assert {"eks", "onprem"} <= set(result.commits)
            finally:
                await ad.close()

        asyncio.run(scenario())
    finally:
        fleet.stop()
