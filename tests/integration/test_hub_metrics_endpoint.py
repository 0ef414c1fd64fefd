"""Flagger's series on the /metrics of a running hub (the real Hub, worker, core and API; in-memory
zones with good metrics), read while a rollout walks its steps and after it is promoted."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from federation.core.state import Phase
from federation.hub.api import app_for
from federation.hub.service import Hub
from federation.hub.store import MemoryStore
from tests import hubfakes

TOKEN = "t" * 32
KEY = "shop/frontend"
Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient) -> Series:
    r = await client.get("/metrics")
    assert r.status_code == 200, r.text
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(r.text) for s in fam.samples}


def at(series: Series, name: str, /, **labels: str) -> float | None:
    return series.get((name, frozenset(labels.items())))


async def scrape_until(client: httpx.AsyncClient, check: object, timeout: float, what: str) -> Series:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        series = await scrape(client)
        if check(series):  # type: ignore[operator]
            return series
        await asyncio.sleep(0.02)
    raise AssertionError(f"{what}: not after {timeout:g}s")


def test_flagger_series_follow_a_rollout_on_a_running_hub(tmp_path: Path):
    parts = hubfakes.MemoryParts(hubfakes.fleet(), [hubfakes.canary(interval="1s")])
    store = MemoryStore()
    hub = Hub(hubfakes.fleet(), tmp_path / "hub", tick=0.05, discover_every=1.0, store=store, parts=parts)

    async def go() -> None:
        task = asyncio.create_task(hub.run())
        transport = httpx.ASGITransport(app=app_for(hub, TOKEN))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://hub", timeout=60) as client:
                first = await scrape_until(client, lambda s: at(s, "flagger_canary_total", namespace="shop") == 1,
                                           60, "the first discovery")
                assert at(first, "flagger_info", version="0.1.0", mesh_provider="kuma") == 1
                mid = await scrape_until(
                    client, lambda s: at(s, "flagger_canary_weight", workload="frontend", namespace="shop") == 40,
                    120, "the canary at 40%")
                # One scrape: both sides of the split, Flagger's "running", the analysis that got it here.
                assert at(mid, "flagger_canary_weight", workload="frontend-primary", namespace="shop") == 60
                assert at(mid, "flagger_canary_status", name="frontend", namespace="shop") == 0
                assert at(mid, "flagger_canary_metric_analysis", name="frontend", namespace="shop",
                          metric="request-success-rate") == 99.9
                assert at(mid, "federation_canary_metric_value", name="frontend", namespace="shop",
                          metric="request-success-rate", zone="eks") == 99.9
                assert at(mid, "federation_subset_weight", name="frontend", namespace="shop",
                          zone="vms", version="v1") == 60
                done = await scrape_until(
                    client, lambda s: at(s, "flagger_canary_status", name="frontend", namespace="shop") == 1
                    and at(s, "federation_canary_status", name="frontend", namespace="shop") == 1,
                    120, "the rollout promoted")
                assert (await store.load(KEY)).phase is Phase.SUCCEEDED
                assert at(done, "flagger_canary_weight", workload="frontend-primary", namespace="shop") == 100
                assert at(done, "flagger_canary_weight", workload="frontend", namespace="shop") == 0
                assert at(done, "flagger_canary_successes_total", name="frontend", namespace="shop",
                          deployment_strategy="canary", analysis_status="completed") == 1
                ticks = at(done, "flagger_canary_duration_seconds_count", name="frontend", namespace="shop")
                assert ticks is not None and ticks >= len(parts.actions)
                # Every step the executor applied was seen converged, and timed.
                steps = at(done, "federation_step_latency_seconds_count", name="frontend", namespace="shop")
                assert steps is not None and steps >= 5 and len(parts.actions) >= 5
                assert at(done, "federation_canary_step", name="frontend", namespace="shop") == parts.actions[-1][2].step
                assert at(done, "federation_zone_up", name="frontend", namespace="shop", zone="eks") == 1
                assert at(done, "federation_hub_rollouts_owned") == 1
        finally:
            hub.stop()
            await asyncio.wait_for(task, 30)

    asyncio.run(go())
