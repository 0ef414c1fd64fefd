"""A hub whose Lease API does not answer (a kube-apiserver address where nothing listens): its
discovery still finishes — the hub is ready, the rollouts are known, the trouble is one error in
the API's status and one log line without a traceback, not repeated at the next discovery, and for
the alerts a failed discovery that renewed nothing — and a
Lease held before the API went away keeps its rollout running only until it could have run out."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path

import httpx
import pytest
from kubernetes import client as k8s

from federation.hub.api import app_for
from federation.hub.service import Hub
from federation.hub.store import MemoryStore
from federation.runtimes.kubernetes import Api
from federation.runtimes.leases import Shards
from tests import hubfakes
from tests.integration.conftest import free_port

TOKEN = "t" * 32


def unreachable_api() -> Api:
    """A real client of the API server's address, where nothing listens (connection refused)."""
    return Api(k8s.ApiClient(k8s.Configuration(host=f"http://127.0.0.1:{free_port()}")), timeout=2.0, retries=0)


def test_an_unreachable_lease_api_is_one_error_not_a_failed_discovery(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    parts = hubfakes.MemoryParts(hubfakes.fleet(), [hubfakes.canary()])
    api = unreachable_api()
    hub = Hub(hubfakes.fleet(), tmp_path / "hub", tick=0.05, store=MemoryStore(), parts=parts,
              shards=Shards(api, "federation-system", "replica-1"))

    async def go() -> None:
        try:
            with caplog.at_level(logging.INFO, logger="federation"):
                await hub.discover()
                await hub.discover()
            assert hub.ready.is_set()
            assert hub.owned == set() and hub.tasks == {}
            assert set(hub.canaries) == {"shop/frontend"}
            error = hub.errors["leases"]
            assert error.startswith("leases: not renewed or taken for 1 of 1 rollout(s) (shop/frontend): lease: ")
            assert "running the 0 whose Lease has not run out" in error
            errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert [r.getMessage() for r in errors] == [error], "one line, logged once"
            assert errors[0].exc_info is None, "no traceback"
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app_for(hub, TOKEN)),
                                         base_url="http://hub") as client:
                ready = (await client.get("/readyz")).json()
                assert ready["status"] == "ready" and ready["errors"] == 1
                listed = (await client.get("/api/v1/rollouts", headers={"Authorization": f"Bearer {TOKEN}"})).json()
                assert listed["errors"] == {"leases": error}
                # For the alerts (FederationHubReplicaWithoutLeases, not-renewing): not renewed, counted.
                metrics = (await client.get("/metrics")).text
                assert "federation_hub_discovery_errors_total 2.0" in metrics
                assert "federation_hub_last_discovery_timestamp_seconds 0.0" in metrics
                assert "federation_hub_leases_held 0.0" in metrics
        finally:
            hub.stop()
            await hub.run()  # stops at once: releases what it holds (nothing), closes the parts
            api.close()

    asyncio.run(go())


class Clock:
    def __init__(self) -> None:
        self.t = dt.datetime(2026, 12, 6, 8, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.t


def test_a_held_lease_outlives_a_blip_of_the_api_but_not_its_duration():
    """A Lease we held is ours until ``duration`` after our last renewal: the rollout keeps running
    through a short outage of the API and stops once the Lease may have passed to another replica."""
    clock = Clock()
    api = unreachable_api()
    shards = Shards(api, "federation-system", "replica-1", duration=15, clock=clock)
    key = "shop/frontend"

    async def go() -> None:
        assert await shards.reconcile([key]) == set()  # never held: nothing runs
        lease = shards.leases[key]
        lease.held, lease.valid_until = True, clock.t + dt.timedelta(seconds=15)  # as after a renewal at t
        clock.t += dt.timedelta(seconds=10)
        assert await shards.reconcile([key]) == {key} and key in shards.errors
        clock.t += dt.timedelta(seconds=5)
        assert await shards.reconcile([key]) == set() and not lease.held

    try:
        asyncio.run(go())
    finally:
        api.close()
