"""Benchmark: 1,000 rollouts on one hub (``hub.service.Hub``: discovery, one supervised worker per
rollout, the real worker and core, the memory store) with the hub's parts in memory (``tests.hubfakes``) — every step
applies at once and every zone reports good metrics. Prints hub CPU and RSS per rollout, hub ticks
per second and decisions per second of the core (CPU spent inside ``decide_or_ask`` only)."""

from __future__ import annotations

import asyncio
import copy
import gc
import resource
import time
from pathlib import Path
from typing import Any

from federation import specfiles
from federation.core import decide as core
from federation.core import spec as specs
from federation.core.state import Phase
from federation.demo import run as demo_run
from federation.hub import worker as worker_mod
from federation.hub.service import Hub
from federation.hub.store import MemoryStore
from tests.hubfakes import MemoryParts

ROOT = Path(__file__).resolve().parents[2]
ROLLOUTS = 1000


def _canaries() -> list[specs.FederatedCanary]:
    base = demo_run.canary_doc(demo_run.Pace.fast(), ("v1", ["vms"]), ("v2", ["eks", "onprem"]))
    base["spec"]["analysis"].update({"interval": "1s", "stepWeight": 20, "maxWeight": 60, "stepWeightPromotion": 50})
    out = []
    for i in range(ROLLOUTS):
        doc = copy.deepcopy(base)
        doc["metadata"]["name"] = f"svc{i:04d}"
        doc["spec"]["canary"]["zones"] = [["eks"], ["eks", "onprem"], ["onprem", "vms"]][i % 3]
        out.append(specs.FederatedCanary.model_validate(doc))
    return out


def test_1000_rollouts_on_one_hub(tmp_path: Path):
    fleet = specfiles.load_one(ROOT / "clusters" / "fleet.yaml", specs.Fleet)
    canaries = _canaries()
    gc.collect()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    decide_cpu = [0.0, 0]
    real_decide = core.decide_or_ask

    def timed_decide(*args: Any) -> Any:
        t = time.process_time()
        try:
            return real_decide(*args)
        finally:
            decide_cpu[0] += time.process_time() - t
            decide_cpu[1] += 1

    adapters = MemoryParts(fleet, canaries)
    store = MemoryStore()
    worker_mod.core.decide_or_ask = timed_decide  # type: ignore[attr-defined]
    try:
        hub = Hub(fleet, tmp_path / "hub", tick=0.05, discover_every=1.0, store=store, parts=adapters)

        async def scenario() -> tuple[float, float]:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            task = asyncio.create_task(hub.run())
            deadline = time.monotonic() + 300
            done = 0
            while time.monotonic() < deadline:
                # the hub's last report per rollout (cheap; the store is checked at the end)
                done = sum(r.decision.status.phase in (Phase.SUCCEEDED, Phase.FAILED) for r in hub.last.values())
                if done == ROLLOUTS:
                    break
                await asyncio.sleep(0.5)  # polling the store for the end state, with a deadline
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            hub.stop()
            await task
            return wall, cpu

        wall, cpu = asyncio.run(scenario())
    finally:
        worker_mod.core.decide_or_ask = real_decide  # type: ignore[attr-defined]
    statuses = [asyncio.run(store.load(c.key)) for c in canaries]
    assert all(s.phase is Phase.SUCCEEDED for s in statuses), {s.phase for s in statuses}
    assert not hub.restarts
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n = decide_cpu[1]
    print(f"\n[bench hub] {ROLLOUTS} rollouts on one hub (memory adapters, 1 s analysis interval) to Succeeded in "
          f"{wall:.1f} s: {adapters.steps} steps, {n} ticks ({n / wall:,.0f} ticks/s); hub CPU {cpu:.1f} s = "
          f"{cpu / ROLLOUTS * 1000:.1f} ms per rollout; max RSS {rss / 1024:.0f} MiB, "
          f"+{(rss - rss0) / ROLLOUTS:.1f} KiB per rollout over the loaded specs; core: {n / decide_cpu[0]:,.0f} "
          f"decide_or_ask calls/s ({decide_cpu[0] / n * 1e6:.0f} µs CPU each)")
