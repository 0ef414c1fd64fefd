"""Kubernetes through the official client, against a real kube-apiserver (tests/real_kube.py): the
hub's calls run with its ServiceAccounts' tokens and the RBAC of clusters/hub/; what a controller
would write (Flux's and the Deployment controller's status) the test writes as the admin."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
from pathlib import Path

import pytest
from kubernetes.client.exceptions import ApiException

from federation.core.errors import PermanentError, TemporaryError
from federation.core.spec import Kubeconfig
from federation.gitops import repo as gitrepo
from federation.runtimes import kubernetes as kube
from federation.runtimes.leases import Lease, Shards
from tests.integration import flux
from tests.real_kube import HUB_NS, Cluster, condition, deployment, deployment_status

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_flux_convergence_ready_stalled_behind_and_reconcile_request(k8s: Cluster, tmp_path: Path):
    admin, hub = k8s.admin, k8s.member
    bare = tmp_path / "zone.git"
    gitrepo.init_bare_seeded(bare, ROOT / "clusters" / "eks")
    repo = gitrepo.Repo(str(bare), "main", tmp_path / "w")
    repo.ensure()
    first = repo.head()
    (repo.workdir / "x.txt").write_text("1")
    ours = repo.commit_and_push(lambda r: ["x.txt"], "hub step")
    human = tmp_path / "h"
    subprocess.run(["git", "clone", "-q", str(bare), str(human)], check=True)
    (human / "y.txt").write_text("2")
    subprocess.run(["git", "-C", str(human), "add", "y.txt"], check=True)
    subprocess.run(["git", "-C", str(human), "-c", "user.name=h", "-c", "user.email=h@x", "commit", "-qm", "later"], check=True)
    subprocess.run(["git", "-C", str(human), "push", "-q", "origin", "HEAD:main"], check=True)
    later = subprocess.run(["git", "-C", str(human), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    repo.ensure()
    flux.create(admin, "zone")
    z = kube.FluxZone(hub)

    def converged(st: kube.FluxStatus) -> bool:
        return st.ready and st.revision is not None and repo.contains(st.revision, ours)

    assert not asyncio.run(z.status()).ready  # created, never reconciled: no status
    flux.report(admin, "zone", first)
    st = asyncio.run(z.status())
    assert st.ready and st.revision == first and not converged(st)  # behind our commit
    flux.report(admin, "zone", ours)
    assert converged(asyncio.run(z.status()))
    flux.report(admin, "zone", later)
    assert converged(asyncio.run(z.status()))  # at or after our commit counts
    flux.report(admin, "zone", later, ready="False", reason="ReconciliationFailed", stalled=True)
    st = asyncio.run(z.status())
    assert not st.ready and st.stalled and st.failing and st.reason == "ReconciliationFailed"
    flux.report(admin, "zone", ours, observed=0)  # a status for an older generation is not ready
    assert not asyncio.run(z.status()).ready
    stamp = asyncio.run(z.request_reconcile(dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)))
    for g, v, p in (kube.FLUX_KS, kube.FLUX_GIT):
        obj = admin.custom.get_namespaced_custom_object(g, v, "flux-system", p, "zone")
        assert obj["metadata"]["annotations"][kube.RECONCILE] == stamp == "2026-11-22T12:00:00.000000Z"
        # an annotation is metadata: the generation (and so Flux's observedGeneration check) stays
        assert obj["metadata"]["generation"] == 1


def test_readiness_gating_from_deployments(k8s: Cluster):
    admin = k8s.admin
    deployment(admin, "shop", "frontend-v2", 4, {"app": "f"})
    z = kube.FluxZone(k8s.member)
    pct, why = asyncio.run(z.deployment_ready("shop", "frontend-v2", 100))
    assert pct == 0.0 and why == "rollout not observed yet"  # no controller has seen it
    deployment_status(admin, "shop", "frontend-v2", 2, 4)
    pct, why = asyncio.run(z.deployment_ready("shop", "frontend-v2", 100))
    assert pct == 50.0 and why == "2/4 available"
    deployment_status(admin, "shop", "frontend-v2", 4, 4)
    assert asyncio.run(z.deployment_ready("shop", "frontend-v2", 100)) == (100.0, "")
    deployment_status(admin, "shop", "frontend-v2", 3, 4, [
        condition("Progressing", "False", "ProgressDeadlineExceeded") | {"lastUpdateTime": dt.datetime.now(dt.UTC)
                                                                         .strftime("%Y-%m-%dT%H:%M:%SZ")}])
    pct, why = asyncio.run(z.deployment_ready("shop", "frontend-v2", 75))
    assert pct == 75.0 and "progress deadline exceeded" in why
    assert asyncio.run(z.deployment_ready("shop", "missing", 100))[0] is None


class Clock:
    def __init__(self) -> None:
        self.t = dt.datetime(2026, 11, 22, 12, 0, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.t

    def advance(self, s: float) -> None:
        self.t += dt.timedelta(seconds=s)


def test_lease_election_two_contenders_hand_over_and_no_split_brain(k8s: Cluster):
    """The clock ticks in whole seconds: a real API server refuses a MicroTime without its six
    fractional digits (400), which the client's isoformat() drops on a whole second."""
    api = k8s.hub
    clock = Clock()
    a = Lease(api, HUB_NS, "federation-leader", "replica-a", duration=10, clock=clock)
    b = Lease(k8s.hub, HUB_NS, "federation-leader", "replica-b", duration=10, clock=clock)

    async def scenario() -> None:
        assert await a.try_acquire() and not await b.try_acquire()
        clock.advance(5)
        assert await a.try_acquire()  # renew
        clock.advance(9)
        assert not await b.try_acquire()  # a renewed 9 s ago: not expired
        clock.advance(2)  # a stopped renewing 11 s ago
        assert await b.try_acquire()
        assert not await a.try_acquire()  # a comes back: b holds a fresh lease
        lease = api.coordination.read_namespaced_lease("federation-leader", HUB_NS)
        assert lease.spec.holder_identity == "replica-b" and lease.spec.lease_transitions == 1
        # Race at expiry: both read the same resourceVersion; the API accepts one PUT, 409s the other.
        clock.advance(11)
        results = await asyncio.gather(a.try_acquire(), b.try_acquire())
        assert sorted(results) == [False, True]
        holder = api.coordination.read_namespaced_lease("federation-leader", HUB_NS).spec.holder_identity
        assert (holder == "replica-a") == results[0] and (holder == "replica-b") == results[1]
        await (a if results[0] else b).release()
        assert await (b if results[0] else a).try_acquire()  # released: taken at once

    asyncio.run(scenario())


def test_stale_resource_version_cannot_steal_a_lease(k8s: Cluster, monkeypatch):
    api = k8s.hub
    clock = Clock()
    a = Lease(api, HUB_NS, "l", "a", duration=10, clock=clock)
    b = Lease(api, HUB_NS, "l", "b", duration=10, clock=clock)
    asyncio.run(a.try_acquire())
    clock.advance(11)
    stale = api.coordination.read_namespaced_lease("l", HUB_NS)
    asyncio.run(a.try_acquire())  # a renews in between: the resourceVersion moves on
    real_read = api.coordination.read_namespaced_lease
    monkeypatch.setattr(api.coordination, "read_namespaced_lease", lambda *args, **kw: stale)
    assert not asyncio.run(b.try_acquire())  # b's view says expired, but its PUT is 409
    monkeypatch.setattr(api.coordination, "read_namespaced_lease", real_read)
    assert api.coordination.read_namespaced_lease("l", HUB_NS).spec.holder_identity == "a"


def test_sharded_rollouts_move_when_a_replica_dies(k8s: Cluster):
    clock = Clock()
    rollouts = [f"shop/svc{i}" for i in range(6)]
    r1 = Shards(k8s.hub, HUB_NS, "r1", duration=10, clock=clock, max_share=3)
    r2 = Shards(k8s.hub, HUB_NS, "r2", duration=10, clock=clock, max_share=3)

    async def scenario() -> None:
        own1 = await r1.reconcile(rollouts)
        own2 = await r2.reconcile(rollouts)
        assert len(own1) == 3 and len(own2) == 3 and not own1 & own2
        clock.advance(5)
        assert await r1.reconcile(rollouts) == own1 and await r2.reconcile(rollouts) == own2
        clock.advance(11)  # r1 died 11 s ago; r2 keeps renewing and may now take everything
        r2.max_share = None
        assert await r2.reconcile(rollouts) == set(rollouts)

    asyncio.run(scenario())


def test_events_go_to_the_namespace_of_the_object_they_name(k8s: Cluster):
    """An Event naming shop/frontend lives in shop (the API server answers 422 otherwise), and the
    hub's RBAC lets it record Events there."""
    asyncio.run(kube.emit_event(k8s.hub, {"kind": "FederatedCanary", "name": "frontend", "namespace": "shop",
                                          "apiVersion": "federation.io/v1alpha1"}, "Promoting", "promoting v2"))
    (ev,) = k8s.admin.core.list_namespaced_event("shop").items
    assert (ev.reason, ev.involved_object.name, ev.involved_object.namespace) == ("Promoting", "frontend", "shop")
    assert k8s.admin.core.list_namespaced_event(HUB_NS).items == []
    # What the hub did before: an Event in its own namespace naming an object in another one.
    with pytest.raises(ApiException) as err:
        k8s.admin.core.create_namespaced_event(HUB_NS, {
            "metadata": {"generateName": "frontend."}, "reason": "Promoting", "message": "m", "type": "Normal",
            "involvedObject": {"kind": "FederatedCanary", "name": "frontend", "namespace": "shop"}})
    assert err.value.status == 422 and "does not match event" in err.value.body


def test_server_side_apply_of_a_mesh_route(k8s: Cluster):
    route = {"apiVersion": "kuma.io/v1alpha1", "kind": "MeshHTTPRoute",
             "metadata": {"name": "frontend-federation", "namespace": "kuma-system"}, "spec": {"targetRef": {"kind": "Mesh"}}}
    asyncio.run(kube.server_side_apply(k8s.member, route))  # created (201: the client returns no body)
    first = k8s.admin.custom.get_namespaced_custom_object("kuma.io", "v1alpha1", "kuma-system", "meshhttproutes",
                                                          "frontend-federation")
    route["spec"]["to"] = [{"targetRef": {"kind": "MeshService", "name": "frontend"},
                            "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                                       "default": {"backendRefs": [{"kind": "MeshService", "name": "frontend", "weight": 1}]}}]}]
    out = asyncio.run(kube.server_side_apply(k8s.member, route))
    assert out["spec"]["to"][0]["targetRef"]["name"] == "frontend"
    assert out["metadata"]["uid"] == first["metadata"]["uid"]  # applied again, not created again
    managers = {m["manager"] for m in out["metadata"]["managedFields"]}
    assert managers == {"federation"}
    # The CRD's schema is enforced: a rule without matches is refused, with the server's reason.
    del route["spec"]["to"][0]["rules"][0]["matches"]
    with pytest.raises(TemporaryError, match=r"422 .*spec.to\[0\].rules\[0\].matches: Required value"):
        asyncio.run(kube.server_side_apply(k8s.member, route))


def test_a_verb_the_rbac_does_not_grant_is_a_clear_403(k8s: Cluster):
    """The member-cluster account may read Deployments, not change ConfigMaps on the hub's cluster,
    nor delete Deployments: the API answers 403 and the hub reports an RBAC error, with the API's
    words naming the account, the verb and the resource."""
    with pytest.raises(PermanentError, match=r"access denied \(403\): .*flux-system:federation-hub.* cannot "
                                             r"(create|update|patch|get) resource \"configmaps\".*check the hub's RBAC"):
        asyncio.run(kube.put_configmap(k8s.member, HUB_NS, "x", {"a": "1"}, labels={}, annotations={},
                                       resource_version=None))
    deployment(k8s.admin, "shop", "frontend-v1", 1, {"app": "f"})
    with pytest.raises(ApiException) as err:
        k8s.member.apps.delete_namespaced_deployment("frontend-v1", "shop")
    assert err.value.status == 403 and "cannot delete resource" in err.value.body


def test_unreadable_kubeconfig_is_a_clear_error(tmp_path: Path):
    with pytest.raises(PermanentError, match="kubeconfig"):
        kube.api_client(Kubeconfig(path=str(tmp_path / "missing"), context="x"))
