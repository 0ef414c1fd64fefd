"""Two services rolling out in one VM zone: their rollouts' step numbers are unrelated, so the agents'
older-state guard orders desired states by the zone repo's generation, and the hub counts a host
as applied for a rollout only once the revision it runs holds that rollout's step commit. Real
agents over SSH (two VMs), a real zone repo, the hub's VmZone."""

from __future__ import annotations

import asyncio
import json
import types
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from federation.core.spec import GitSource
from federation.core.state import Stage
from federation.core.steps import StepRecord
from federation.core.weights import Subset
from federation.gitops import releases
from federation.gitops.aio import AsyncRepo
from federation.gitops.repo import init_bare_seeded
from federation.runtimes.ssh import Pool
from federation.runtimes.vm import VmZone
from tests.integration.test_vm_agents_ssh import BIN, AgentHost, fleet, zone  # noqa: F401  (fleet: a fixture)

pytestmark = pytest.mark.integration
SERVICES = ("frontend", "backend")


def seed(root: Path) -> None:
    app = [str(BIN / "fed-demo-app"), "--port", "${PORT}"]
    yaml = YAML()
    for s in SERVICES:
        with open(root / f"{s}.yaml", "w") as f:
            yaml.dump({"apiVersion": "federation.io/v1alpha1", "kind": "ZoneRelease", "metadata": {"name": s},
                       "spec": {"service": s, "versions": {"v1": {"command": app, "replicas": 1},
                                                          "v2": {"command": app, "replicas": 1}},
                                "serving": {"v1": 10000}}}, f)


def record(service: str, step: int, v2: int) -> StepRecord:
    return StepRecord(f"shop/{service}", step, Stage.ANALYSIS, v2,
                      ((Subset("vms", "v1"), 10000 - v2), (Subset("vms", "v2"), v2)))


async def until(vz: VmZone, service: str, step: int, timeout: float = 90.0) -> None:
    canary: Any = types.SimpleNamespace(key=f"shop/{service}")
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        st = await vz.observe(canary, step)
        if st.applied_step() == step:
            return
        assert asyncio.get_running_loop().time() < deadline, [(h.target, h.applied_step, h.error) for h in st.hosts]
        await asyncio.sleep(0.1)


def serving_on(host: AgentHost, service: str) -> dict[str, int]:
    desired = json.loads((host.root / "state" / "desired.json").read_text())
    return next(m["spec"]["serving"] for m in desired["manifests"] if m["spec"]["service"] == service)


def test_two_services_in_one_vm_zone_never_count_each_other_s_steps(fleet, tmp_path: Path):  # noqa: F811
    tmp, hosts, key = fleet
    (tmp_path / "seed").mkdir()
    seed(tmp_path / "seed")
    init_bare_seeded(tmp_path / "vms.git", tmp_path / "seed")
    z = zone(tmp, hosts, key).model_copy(update={"git": GitSource(url=str(tmp_path / "vms.git"))})

    async def scenario() -> None:
        pool = Pool(call_timeout=10)
        repo = AsyncRepo.of(z.git, tmp_path / "hub-clone")
        await repo.ensure()
        vz = VmZone(z, repo, pool)
        backend: Any = types.SimpleNamespace(key="shop/backend")
        try:
            # frontend's rollout reaches step 3 on both VMs.
            for step, w in ((1, 1000), (2, 2000), (3, 3000)):
                rec = record("frontend", step, w)
                await releases.commit_step(repo, "vms", "frontend", rec, rec.message("frontend", "v2"))
            await vz.converge(3)
            await until(vz, "frontend", 3)
            # backend's rollout commits its step 1: the VMs run an older revision, so it is not
            # applied for backend (whatever frontend's step number is).
            rec = record("backend", 1, 5000)
            await releases.commit_step(repo, "vms", "backend", rec, rec.message("backend", "v2"))
            assert (await vz.observe(backend, 1)).applied_step() == 0
            # Its step 1 is newer than frontend's step 3 in the zone: the agents take it.
            await vz.converge(1)
            await until(vz, "backend", 1)
            for h in hosts:
                assert serving_on(h, "backend") == {"v1": 5000, "v2": 5000}
                assert serving_on(h, "frontend") == {"v1": 7000, "v2": 3000}
            # A late re-send of an older head is refused; frontend still counts its step 3.
            resp = await pool.call(vz.agents.targets[0], "apply", desired={
                "revision": "0" * 40, "step": 9, "generation": 1, "manifests": []})
            assert resp["ok"] and not resp["accepted"] and "older" in resp["reason"], resp
            await until(vz, "frontend", 3)
        finally:
            await pool.close()

    asyncio.run(scenario())
