"""Several hub replicas: rollouts sharded by per-rollout Leases on a real kube-apiserver (the hub's
ServiceAccount token and RBAC); a replica's death moves its rollouts; phase changes become Events."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from pathlib import Path

import pytest

from federation import specfiles
from federation.core import spec as specs
from federation.core.state import Decision, Emit, Phase, RolloutStatus
from federation.demo import run as demo_run
from federation.demo.fleet import LocalFleet
from federation.gitops import repo as gitrepo
from federation.hub.service import Hub
from federation.hub.worker import TickReport
from federation.runtimes.leases import Shards
from tests.real_kube import HUB_NS, Cluster

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.t = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.t


def test_replica_death_moves_its_rollouts(tmp_path: Path, k8s: Cluster):
    fleet = LocalFleet(tmp_path / "fleet")
    fleet.prepare()  # repos, keys and fleet.yaml; no process is started: workers fail to reach agents, harmlessly
    base = demo_run.canary_doc(demo_run.Pace.fast(), ("v1", ["vms"]), ("v2", ["eks"]))
    work = gitrepo.Repo(fleet.git_url("mesh"), "main", tmp_path / "engineer")
    work.ensure()

    def edit(repo: gitrepo.Repo) -> list[str]:
        paths = []
        for i in range(4):
            doc = copy.deepcopy(base)
            doc["metadata"]["name"] = f"svc{i}"
            doc["spec"]["service"]["name"] = f"svc{i}"  # one canary per service (issue 20)
            (repo.workdir / "canaries").mkdir(exist_ok=True)
            (repo.workdir / "canaries" / f"svc{i}.yaml").write_text(specfiles.dump([doc]))
            paths.append(f"canaries/svc{i}.yaml")
        return paths

    work.commit_and_push(edit, "four services")
    f = specfiles.load_one(fleet.fleet_file, specs.Fleet)
    clock = Clock()
    api = k8s.hub

    async def scenario() -> None:
        h1 = Hub(f, tmp_path / "h1", shards=Shards(api, HUB_NS, "replica-1", duration=15, clock=clock, max_share=2))
        h2 = Hub(f, tmp_path / "h2", shards=Shards(api, HUB_NS, "replica-2", duration=15, clock=clock, max_share=2))
        try:
            await h1.discover()
            await h2.discover()
            assert len(h1.owned) == 2 and len(h2.owned) == 2 and not h1.owned & h2.owned
            assert set(h1.tasks) == h1.owned and set(h2.tasks) == h2.owned
            clock.t += dt.timedelta(seconds=10)
            await h1.discover()
            await h2.discover()  # both renew: nothing moves
            assert len(h1.owned) == 2 and len(h2.owned) == 2
            # replica-1 dies (SIGKILL: no release). 16 s later its Leases have expired.
            for t in h1.tasks.values():
                t.cancel()
            clock.t += dt.timedelta(seconds=16)
            await h2.discover()
            assert h2.owned == {f"shop/svc{i}" for i in range(4)}  # orphans taken despite max_share
            assert set(h2.tasks) == h2.owned
            holders = {k8s.admin.coordination.read_namespaced_lease(n.name, HUB_NS).spec.holder_identity
                       for n in h2.shards.leases.values()}
            assert holders == {"replica-2"}
            # Phase changes become Kubernetes Events on the hub's cluster, in the canary's
            # namespace (an Event elsewhere naming shop/svc1 is refused with 422).
            h2.events = api
            report = TickReport("shop/svc1", 0.0, RolloutStatus(), Decision(
                RolloutStatus(phase=Phase.FAILED), (Emit("error", "Rollback", "rolling back v2"),)), None)
            await h2.forward_events(report)
            (ev,) = k8s.admin.core.list_namespaced_event("shop").items
            assert (ev.reason, ev.type, ev.involved_object.name) == ("Rollback", "Warning", "svc1")
            assert ev.involved_object.namespace == "shop" and ev.source.component == "federation-hub"
        finally:
            for h in (h1, h2):
                for t in h.tasks.values():
                    t.cancel()
                await asyncio.gather(*h.tasks.values(), return_exceptions=True)
                await h.parts.close()
                h.lock.release()

    asyncio.run(scenario())


def test_one_hub_per_state_directory(tmp_path: Path):
    fleet = LocalFleet(tmp_path / "fleet")
    fleet.prepare()
    f = specfiles.load_one(fleet.fleet_file, specs.Fleet)
    h = Hub(f, tmp_path / "state")
    try:
        with pytest.raises(Exception, match="one hub per state directory"):
            Hub(f, tmp_path / "state")
    finally:
        h.lock.release()
    Hub(f, tmp_path / "state").lock.release()  # free again once released
