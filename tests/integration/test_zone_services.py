"""A zone serving two services: the agent gives each its own RDS file and the zone's Envoy routes
both (one RouteConfiguration per file: Envoy rejects a path-based RDS file holding two)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import httpx
import pytest

from federation.core import spec as specs
from federation.demo.fleet import LocalFleet
from federation.runtimes.ssh import Pool
from federation.runtimes.vm import VmAgents

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


def release(service: str, version: str) -> dict:
    cmd = [str(BIN / "fed-demo-app"), "--service", service, "--version", version, "--port", "${PORT}"]
    return {"apiVersion": "federation.io/v1alpha1", "kind": "ZoneRelease", "metadata": {"name": service},
            "spec": {"service": service, "versions": {version: {"command": cmd, "replicas": 1, "health": "/healthz"}},
                     "serving": {version: 10_000}}}


def test_a_zone_routes_two_services_each_through_its_own_listener(tmp_path: Path):
    fleet = LocalFleet(tmp_path / "fleet", services=("frontend", "cart"))
    fleet.prepare()
    try:
        fleet.start(only=["vms"])
        zone_doc = next(z for z in fleet.fleet_doc()["spec"]["zones"] if z["name"] == "vms")

        async def scenario() -> None:
            pool = Pool(call_timeout=5)
            agents = VmAgents(specs.Zone.model_validate(zone_doc), pool)
            try:
                await agents.apply("r1", 1, [release("frontend", "v7"), release("cart", "v9")])
                deadline = asyncio.get_running_loop().time() + 90
                while (st := await agents.observe()).applied_step() != 1:
                    assert asyncio.get_running_loop().time() < deadline, st.reasons()
                    await asyncio.sleep(0.2)
            finally:
                await pool.close()

        asyncio.run(scenario())
        envoy_dir = fleet.zdir("vms") / "envoy"
        for service, version in (("frontend", "v7"), ("cart", "v9")):
            doc = json.loads((envoy_dir / f"rds-{service}.json").read_text())
            assert [r["name"] for r in doc["resources"]] == [service]
            r = httpx.get(fleet.service_url("vms", service), timeout=5)
            assert r.status_code == 200 and r.headers["x-version"] == version, r.text
    finally:
        fleet.stop()


def test_an_edge_rds_path_with_service_gives_each_service_its_own_file(tmp_path: Path):
    from federation.runtimes.edge import EnvoyEdge

    edge = EnvoyEdge(specs.Edge.model_validate({"rdsPath": str(tmp_path / "rds-{service}.json"),
                                                "admin": {"address": "127.0.0.1", "port": 1}}))
    for service in ("frontend", "cart"):
        asyncio.run(edge.apply({"version_info": f"{service}@step-1", "resources": [{"name": service}]}))
    assert json.loads((tmp_path / "rds-frontend.json").read_text())["version_info"] == "frontend@step-1"
    assert json.loads((tmp_path / "rds-cart.json").read_text())["version_info"] == "cart@step-1"
