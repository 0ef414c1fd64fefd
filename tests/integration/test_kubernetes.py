"""Kubernetes through the official client, against the HTTP-level emulator on loopback."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
from pathlib import Path

import pytest
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from federation.core.errors import PermanentError
from federation.core.spec import Kubeconfig
from federation.gitops import repo as gitrepo
from federation.runtimes import kubernetes as kube
from federation.runtimes.leases import Lease, Shards
from tests.k8s_emulator import Emulator

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def emu(tmp_path: Path):
    with Emulator() as e:
        e.kubeconfig(str(tmp_path / "kubeconfig"))
        yield e, kube.Api(kube.api_client(Kubeconfig(path=str(tmp_path / "kubeconfig"), context="emulated")))


def test_emulator_is_faithful_where_the_hub_depends_on_it(emu):
    e, api = emu
    core = api.core
    cm = core.create_namespaced_config_map("hub", k8s.V1ConfigMap(
        metadata=k8s.V1ObjectMeta(name="state", labels={"app": "federation", "tier": "hub"}), data={"a": "1"}))
    rv = cm.metadata.resource_version
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("hub", k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="state")))
    assert err.value.status == 409
    cm.data = {"a": "2"}
    fresh = core.replace_namespaced_config_map("state", "hub", cm)
    assert int(fresh.metadata.resource_version) > int(rv)
    cm.metadata.resource_version = rv  # stale
    cm.data = {"a": "3"}
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map("state", "hub", cm)
    assert err.value.status == 409 and "modified" in err.value.body
    core.patch_namespaced_config_map("state", "hub", {"data": {"b": "x"}})
    assert core.read_namespaced_config_map("state", "hub").data == {"a": "2", "b": "x"}
    core.patch_namespaced_config_map("state", "hub", [{"op": "remove", "path": "/data/a"}])  # a list: JSON patch
    assert ("PATCH", "/api/v1/namespaces/hub/configmaps/state") in e.requests
    assert core.read_namespaced_config_map("state", "hub").data == {"b": "x"}
    core.create_namespaced_config_map("hub", k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="other", labels={"app": "x"})))
    names = [c.metadata.name for c in core.list_namespaced_config_map("hub", label_selector="app=federation").items]
    assert names == ["state"]
    assert [c.metadata.name for c in core.list_namespaced_config_map("hub", label_selector="app in (x,y)").items] == ["other"]
    # status subresource: writes to /status touch only status, writes to the object never status
    g, v, p = kube.FLUX_KS
    api.custom.create_namespaced_custom_object(g, v, "flux-system", p, {
        "apiVersion": f"{g}/{v}", "kind": "Kustomization", "metadata": {"name": "zone"}, "spec": {"path": "./"}})
    api.custom.patch_namespaced_custom_object_status(g, v, "flux-system", p, "zone",
                                                     {"status": {"lastAppliedRevision": "x"}, "spec": {"path": "evil"}})
    obj = api.custom.get_namespaced_custom_object(g, v, "flux-system", p, "zone")
    assert obj["spec"]["path"] == "./" and obj["status"]["lastAppliedRevision"] == "x"
    api.custom.patch_namespaced_custom_object(g, v, "flux-system", p, "zone", {"status": {"lastAppliedRevision": "y"}})
    assert api.custom.get_namespaced_custom_object(g, v, "flux-system", p, "zone")["status"]["lastAppliedRevision"] == "x"
    # watch: events after a resourceVersion, through the client's own Watch
    start = core.list_namespaced_config_map("hub").metadata.resource_version
    core.patch_namespaced_config_map("state", "hub", {"data": {"c": "y"}})
    core.delete_namespaced_config_map("other", "hub")
    events = [(ev["type"], ev["object"].metadata.name) for ev in k8s_watch.Watch().stream(
        core.list_namespaced_config_map, "hub", resource_version=start, timeout_seconds=1)]
    assert events == [("MODIFIED", "state"), ("DELETED", "other")]


def flux(api: kube.Api, revision: str | None, ready: str = "True", reason: str = "ReconciliationSucceeded",
         stalled: bool = False, observed: int | None = None) -> None:
    g, v, p = kube.FLUX_KS
    try:
        api.custom.get_namespaced_custom_object(g, v, "flux-system", p, "zone")
    except ApiException:
        api.custom.create_namespaced_custom_object(g, v, "flux-system", p, {
            "apiVersion": f"{g}/{v}", "kind": "Kustomization", "metadata": {"name": "zone"}, "spec": {"path": "./"}})
        gg, gv, gp = kube.FLUX_GIT
        api.custom.create_namespaced_custom_object(gg, gv, "flux-system", gp, {
            "apiVersion": f"{gg}/{gv}", "kind": "GitRepository", "metadata": {"name": "zone"}, "spec": {"url": "x"}})
    conds = [{"type": "Ready", "status": ready, "reason": reason, "message": f"{reason} msg"}]
    if stalled:
        conds.append({"type": "Stalled", "status": "True", "reason": "BuildFailed", "message": "kustomize build failed"})
    api.custom.patch_namespaced_custom_object_status(g, v, "flux-system", p, "zone", {"status": {
        "lastAppliedRevision": f"main@sha1:{revision}" if revision else None, "conditions": conds,
        "observedGeneration": 1 if observed is None else observed}})


def test_flux_convergence_ready_stalled_behind_and_reconcile_request(emu, tmp_path: Path):
    _, api = emu
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
    z = kube.FluxZone(api)

    def converged(st: kube.FluxStatus) -> bool:
        return st.ready and st.revision is not None and repo.contains(st.revision, ours)

    flux(api, first)
    st = asyncio.run(z.status())
    assert st.ready and st.revision == first and not converged(st)  # behind our commit
    flux(api, ours)
    assert converged(asyncio.run(z.status()))
    flux(api, later)
    assert converged(asyncio.run(z.status()))  # at or after our commit counts
    flux(api, later, ready="False", reason="ReconciliationFailed", stalled=True)
    st = asyncio.run(z.status())
    assert not st.ready and st.stalled and st.failing and st.reason == "ReconciliationFailed"
    flux(api, ours, observed=0)  # a status for an older generation is not ready
    assert not asyncio.run(z.status()).ready
    stamp = asyncio.run(z.request_reconcile(dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)))
    for g, v, p in (kube.FLUX_KS, kube.FLUX_GIT):
        obj = api.custom.get_namespaced_custom_object(g, v, "flux-system", p, "zone")
        assert obj["metadata"]["annotations"][kube.RECONCILE] == stamp == "2026-11-22T12:00:00.000000Z"


def test_readiness_gating_from_deployments(emu):
    _e, api = emu
    api.apps.create_namespaced_deployment("shop", k8s.V1Deployment(
        metadata=k8s.V1ObjectMeta(name="frontend-v2"),
        spec=k8s.V1DeploymentSpec(replicas=4, selector=k8s.V1LabelSelector(match_labels={"app": "f"}),
                                  template=k8s.V1PodTemplateSpec(metadata=k8s.V1ObjectMeta(labels={"app": "f"}),
                                                                 spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="c", image="i")])))))
    z = kube.FluxZone(api)

    def status(available: int, updated: int, conds: list | None = None) -> None:
        api.apps.patch_namespaced_deployment_status("frontend-v2", "shop", {"status": {
            "observedGeneration": 1, "replicas": 4, "availableReplicas": available, "updatedReplicas": updated,
            "conditions": conds or []}})

    status(2, 4)
    pct, why = asyncio.run(z.deployment_ready("shop", "frontend-v2", 100))
    assert pct == 50.0 and why == "2/4 available"
    status(4, 4)
    assert asyncio.run(z.deployment_ready("shop", "frontend-v2", 100)) == (100.0, "")
    status(3, 4, [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}])
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


def test_lease_election_two_contenders_hand_over_and_no_split_brain(emu):
    _, api = emu
    clock = Clock()
    a = Lease(api, "hub", "federation-leader", "replica-a", duration=10, clock=clock)
    b = Lease(api, "hub", "federation-leader", "replica-b", duration=10, clock=clock)

    async def scenario() -> None:
        assert await a.try_acquire() and not await b.try_acquire()
        clock.advance(5)
        assert await a.try_acquire()  # renew
        clock.advance(9)
        assert not await b.try_acquire()  # a renewed 9 s ago: not expired
        clock.advance(2)  # a stopped renewing 11 s ago
        assert await b.try_acquire()
        assert not await a.try_acquire()  # a comes back: b holds a fresh lease
        lease = api.coordination.read_namespaced_lease("federation-leader", "hub")
        assert lease.spec.holder_identity == "replica-b" and lease.spec.lease_transitions == 1
        # Race at expiry: both read the same resourceVersion; the API accepts one PUT, 409s the other.
        clock.advance(11)
        results = await asyncio.gather(a.try_acquire(), b.try_acquire())
        assert sorted(results) == [False, True]
        holder = api.coordination.read_namespaced_lease("federation-leader", "hub").spec.holder_identity
        assert (holder == "replica-a") == results[0] and (holder == "replica-b") == results[1]
        await (a if results[0] else b).release()
        assert await (b if results[0] else a).try_acquire()  # released: taken at once

    asyncio.run(scenario())


def test_stale_resource_version_cannot_steal_a_lease(emu, monkeypatch):
    _, api = emu
    clock = Clock()
    a = Lease(api, "hub", "l", "a", duration=10, clock=clock)
    b = Lease(api, "hub", "l", "b", duration=10, clock=clock)
    asyncio.run(a.try_acquire())
    clock.advance(11)
    stale = api.coordination.read_namespaced_lease("l", "hub")
    asyncio.run(a.try_acquire())  # a renews in between: the resourceVersion moves on
    real_read = api.coordination.read_namespaced_lease
    monkeypatch.setattr(api.coordination, "read_namespaced_lease", lambda *args, **kw: stale)
    assert not asyncio.run(b.try_acquire())  # b's view says expired, but its PUT is 409
    monkeypatch.setattr(api.coordination, "read_namespaced_lease", real_read)
    assert api.coordination.read_namespaced_lease("l", "hub").spec.holder_identity == "a"


def test_sharded_rollouts_move_when_a_replica_dies(emu):
    _, api = emu
    clock = Clock()
    rollouts = [f"shop/svc{i}" for i in range(6)]
    r1 = Shards(api, "hub", "r1", duration=10, clock=clock, max_share=3)
    r2 = Shards(api, "hub", "r2", duration=10, clock=clock, max_share=3)

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


def test_events_and_server_side_apply(emu):
    e, api = emu
    asyncio.run(kube.emit_event(api, "hub", {"kind": "FederatedCanary", "name": "frontend", "namespace": "shop"},
                                "Promoting", "promoting v2"))
    events = api.core.list_namespaced_event("hub").items
    assert len(events) == 1 and events[0].reason == "Promoting" and events[0].involved_object.name == "frontend"
    route = {"apiVersion": "kuma.io/v1alpha1", "kind": "MeshHTTPRoute",
             "metadata": {"name": "frontend-federation", "namespace": "kuma-system"}, "spec": {"targetRef": {"kind": "Mesh"}}}
    asyncio.run(kube.server_side_apply(api, route))
    route["spec"]["to"] = [{"targetRef": {"kind": "MeshService", "name": "frontend"}}]
    out = asyncio.run(kube.server_side_apply(api, route))
    assert out["spec"]["to"][0]["targetRef"]["name"] == "frontend"
    assert ("PATCH", "/apis/kuma.io/v1alpha1/namespaces/kuma-system/meshhttproutes/frontend-federation") in e.requests


def test_unreadable_kubeconfig_is_a_clear_error(tmp_path: Path):
    with pytest.raises(PermanentError, match="kubeconfig"):
        kube.api_client(Kubeconfig(path=str(tmp_path / "missing"), context="x"))
