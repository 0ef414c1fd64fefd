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


def canary(service: str, version: str) -> specs.FederatedCanary:
    return specs.FederatedCanary.model_validate({
        "apiVersion": "federation.io/v1alpha1", "kind": "FederatedCanary",
        "metadata": {"name": service, "namespace": "shop"},
        "spec": {"service": {"name": service, "port": 8080}, "primary": {"version": "v1", "zones": ["eks"]},
                 "canary": {"version": version, "zones": ["vms"]},
                 "analysis": {"interval": "10s", "threshold": 2, "stepWeight": 50, "maxWeight": 50, "metrics": []}}})


def test_two_rollouts_sharing_a_vm_zone_each_reach_their_steps_whatever_their_numbers(tmp_path: Path):
    """Rollouts number their steps independently; the zone's agent holds one desired state. A
    rollout at step 2 converging after one at step 9 must still be applied (the agent ordered
    desired states by the rollout's step and refused it as older: that rollout never progressed)."""
    from federation.core.state import Stage
    from federation.core.steps import StepRecord
    from federation.core.weights import Subset
    from federation.gitops import releases
    from federation.gitops import repo as gitrepo
    from federation.gitops.aio import AsyncRepo
    from federation.runtimes.vm import VmZone

    fleet = LocalFleet(tmp_path / "fleet", services=("frontend", "cart"))
    fleet.prepare()

    def seed(r: gitrepo.Repo) -> list[str]:
        (r.workdir / "frontend.yaml").write_text(specfiles_dump(release("frontend", "v7")))
        (r.workdir / "cart.yaml").write_text(specfiles_dump(release("cart", "v9")))
        return ["frontend.yaml", "cart.yaml"]

    seeder = gitrepo.Repo(fleet.git_url("vms"), "main", tmp_path / "seeder")
    seeder.ensure()
    seeder.commit_and_push(seed, "two services")
    try:
        fleet.start(only=["vms"])
        zone_doc = next(z for z in fleet.fleet_doc()["spec"]["zones"] if z["name"] == "vms")

        async def scenario() -> None:
            pool = Pool(call_timeout=5)
            repo = AsyncRepo(gitrepo.Repo(fleet.git_url("vms"), "main", tmp_path / "hub-vms"))
            await repo.ensure()
            zone = VmZone(specs.Zone.model_validate(zone_doc), repo, pool)
            try:
                for service, version, step in (("frontend", "v7", 9), ("cart", "v9", 2)):
                    record = StepRecord(f"shop/{service}", step, Stage.ANALYSIS, 10_000,
                                        ((Subset("vms", version), 10_000),))
                    assert await releases.commit_step(repo, "vms", service, record,
                                                      record.message(service, version)) is not None
                    await zone.converge(step)
                for service, version, step in (("frontend", "v7", 9), ("cart", "v9", 2)):
                    deadline = asyncio.get_running_loop().time() + 90
                    while True:
                        st = await zone.observe(canary(service, version), step)
                        if st.applied_step() == step and st.ready_percent(service, version) == 100.0:
                            break
                        assert asyncio.get_running_loop().time() < deadline, (service, st)
                        await asyncio.sleep(0.2)
            finally:
                await pool.close()

        asyncio.run(scenario())
    finally:
        fleet.stop()


def specfiles_dump(doc: dict) -> str:
    from federation import specfiles

    return specfiles.dump([{**doc, "spec": {**doc["spec"], "serving": {}}}])
