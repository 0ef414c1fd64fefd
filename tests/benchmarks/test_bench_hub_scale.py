"""Benchmark: 10,000 rollouts on one hub at a 10 s interval (``hub.service.Hub``: discovery, one
supervised worker per rollout, the real worker and core, the memory store) with the hub's parts in
memory (``tests.hubfakes``). After every worker has started, the hub runs a measuring window; the
figures are its CPU share of one core (goal: under half a core), ticks per second and RSS per
rollout. ``BENCH_HUB_ROLLOUTS`` and ``BENCH_HUB_WINDOW`` (seconds) change the size and the window."""

from __future__ import annotations

import asyncio
import copy
import gc
import os
import resource
import time
from pathlib import Path
from typing import Any

from federation import specfiles
from federation.core import decide as core
from federation.core import spec as specs
from federation.demo import run as demo_run
from federation.hub import worker as worker_mod
from federation.hub.service import Hub
from federation.hub.store import MemoryStore
from tests.hubfakes import MemoryParts

ROOT = Path(__file__).resolve().parents[2]
ROLLOUTS = int(os.environ.get("BENCH_HUB_ROLLOUTS", "10000"))
WINDOW = float(os.environ.get("BENCH_HUB_WINDOW", "60"))
INTERVAL = 10.0


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _canaries() -> list[specs.FederatedCanary]:
    base = demo_run.canary_doc(demo_run.Pace.fast(), ("v1", ["vms"]), ("v2", ["eks", "onprem"]))
    base["spec"]["analysis"].update({"interval": "10s", "stepWeight": 5, "maxWeight": 50, "stepWeightPromotion": 10})
    out = []
    for i in range(ROLLOUTS):
        doc = copy.deepcopy(base)
        doc["metadata"]["name"] = f"svc{i:05d}"
        doc["spec"]["canary"]["zones"] = [["eks"], ["eks", "onprem"], ["onprem", "vms"]][i % 3]
        out.append(specs.FederatedCanary.model_validate(doc))
    return out


def test_10000_rollouts_at_a_10s_interval(tmp_path: Path):
    fleet = specfiles.load_one(ROOT / "clusters" / "fleet.yaml", specs.Fleet)
    canaries = _canaries()
    gc.collect()
    rss0 = _rss_kib()
    ticks = [0]
    real_decide = core.decide_or_ask

    def counted(*args: Any) -> Any:
        ticks[0] += 1
        return real_decide(*args)

    adapters = MemoryParts(fleet, canaries)
    worker_mod.core.decide_or_ask = counted  # type: ignore[attr-defined]
    try:
        hub = Hub(fleet, tmp_path / "hub", tick=INTERVAL, discover_every=INTERVAL, store=MemoryStore(), parts=adapters)

        async def scenario() -> tuple[float, float, float, int, int]:
            t_start = time.perf_counter()
            task = asyncio.create_task(hub.run())
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline:
                if len(hub.last) == ROLLOUTS:
                    break
                await asyncio.sleep(0.5)  # until every worker has ticked once (polled, with a deadline)
            assert len(hub.last) == ROLLOUTS, f"only {len(hub.last)} workers ticked"
            started = time.perf_counter() - t_start
            cpu0, wall0, ticks0, steps0 = time.process_time(), time.perf_counter(), ticks[0], adapters.steps
            await asyncio.sleep(WINDOW)  # the measuring window: the hub runs on its own
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            n, steps = ticks[0] - ticks0, adapters.steps - steps0
            hub.stop()
            await task
            return started, cpu, wall, n, steps

        started, cpu, wall, n, steps = asyncio.run(scenario())
    finally:
        worker_mod.core.decide_or_ask = real_decide  # type: ignore[attr-defined]
    assert not hub.restarts
    rss = _rss_kib()
    share = cpu / wall
    print(f"\n[bench hub-scale] {ROLLOUTS:,} rollouts on one hub, {INTERVAL:g} s interval (memory adapters): all "
          f"workers ticking after {started:.0f} s; over a {wall:.0f} s window: hub CPU {share:.2f} of one core "
          f"(goal < 0.50), {n / wall:,.0f} ticks/s (one per rollout per interval would be {ROLLOUTS / INTERVAL:,.0f}), "
          f"{steps / wall:,.1f} steps/s; RSS {rss / 1024:.0f} MiB, {(rss - rss0) / ROLLOUTS:.1f} KiB per rollout "
          f"over the loaded specs (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0
