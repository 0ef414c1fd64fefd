"""One rollout through the hub's worker across a Kubernetes zone and a VM zone: the migration of
the seeds' story, v1 moved from the demo fleet's legacy VMs (fed-agent over SSH, its ingress Envoy,
the edge Envoy) onto ``eks``, a Kubernetes zone on the real kube-apiserver. The hub commits each
step to both zone repos and the mesh repo; Flux's part on ``eks`` is played by the test (the zone
repo's head server-side applied as the zone's ServiceAccount at each new commit and at the hub's
reconcile request, pruned, and Flux's status written: ``demo.fluxlocal.LocalFlux``), and the
kubelet's and the Deployment controller's (the Deployments run as local demo-app processes, their
status written: ``demo.kubelet.LocalKubelet``) and, in the migration, eks's mesh (its ingress Envoy
programmed from the applied HTTPRoute and the ready pods: ``demo.zonemesh.ZoneMesh``), with requests
sent through the edge the whole time. No metrics are judged here: the point is the workload path."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import yaml

from federation.core import spec as specs
from federation.core.state import Emit, Phase
from federation.demo import fluxlocal
from federation.demo.fleet import LocalFleet
from federation.demo.fluxlocal import LocalFlux
from federation.demo.kubelet import LocalKubelet
from federation.demo.procs import Supervisor
from federation.demo.zonemesh import ZoneMesh
from federation.gitops import meshrepo
from federation.gitops import repo as gitrepo
from federation.hub import parts as hub_parts
from federation.hub import reasons
from federation.hub.store import MemoryStore
from federation.hub.worker import RolloutWorker, TickReport
from federation.runtimes import kubernetes as kube
from tests import gitlog
from tests.integration import flux
from tests.real_kube import Cluster
from tests.schemas import validate_kubernetes

pytestmark = pytest.mark.integration
CANARY = {
    "apiVersion": specs.API_VERSION, "kind": "FederatedCanary", "metadata": {"name": "frontend", "namespace": "shop"},
    "spec": {"service": {"name": "frontend", "port": 8080},
             "primary": {"version": "v1", "zones": ["vms"]}, "canary": {"version": "v1", "zones": ["eks"]},
             "progressDeadlineSeconds": 120,
             "analysis": {"interval": "1s", "threshold": 1, "stepWeight": 50, "maxWeight": 50,
                          "stepWeightPromotion": 50, "metrics": []}}}


def hybrid_fleet(local: LocalFleet, k8s: Cluster, ingress_admin: bool = True) -> specs.Fleet:
    """The demo fleet with ``eks`` as a Kubernetes zone (its repo seeded from clusters/eks) and
    ``vms`` as it is; ``onprem`` left out. ``ingress_admin``: the hub also waits for eks's ingress
    Envoy to route the service (``runtimes.flux``)."""
    doc = local.fleet_doc()
    zones = []
    for z in doc["spec"]["zones"]:
        if z["name"] == "eks":
            z = {k: v for k, v in z.items() if k not in ("hosts", "knownHosts", "identityFile", "labels")}
            z.update(kind="kubernetes", kubeconfig={"path": k8s.member_kc.path, "context": "member"})
            if not ingress_admin:  # nothing programs (or runs) eks's ingress Envoy in this test
                z["ingress"] = {k: v for k, v in z["ingress"].items() if k != "adminPort"}
        if z["name"] != "onprem":
            zones.append(z)
    doc["spec"]["zones"] = zones
    return specs.Fleet.model_validate(doc)


def controllers(lf: LocalFlux, kubelet: LocalKubelet, mesh: ZoneMesh | None = None) -> None:
    """Flux reconciles (a new commit, or the hub's request); the kubelet runs what it applied; the
    zone's mesh routes to the ready pods as the applied HTTPRoute says."""
    lf.reconcile()
    kubelet.sync()
    if mesh is not None:
        mesh.sync("frontend")


class Load(threading.Thread):
    """Requests at the edge, one after another, until stopped: status codes and who answered."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.codes: Counter[str] = Counter()
        self.answers: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=5.0) as c:
            while not self.halt.is_set():
                try:
                    r = c.get(self.url)
                    self.codes[str(r.status_code)] += 1
                    self.answers.append(r.text.split(" ok")[0] if r.status_code == 200 else f"HTTP {r.status_code}")
                except httpx.HTTPError as exc:
                    self.codes[type(exc).__name__] += 1
                self.halt.wait(0.02)


def test_a_version_moves_from_the_vms_to_a_kubernetes_zone(tmp_path: Path, k8s: Cluster):
    local = LocalFleet(tmp_path / "fleet")
    local.prepare()
    bare = Path(local.git_url("eks"))
    flux.create_example(k8s, "eks")
    lf = LocalFlux(k8s.server, gitrepo.Repo(str(bare), "main", tmp_path / "flux-clone"), "eks")
    pods = Supervisor(tmp_path / "pods")
    kubelet = LocalKubelet(k8s.server, "shop", "eks", pods, str(Path(sys.executable).parent / "fed-demo-app"))
    canary = specs.FederatedCanary.model_validate(CANARY)
    reports: list[TickReport] = []
    load = Load(local.edge_url)
    try:
        local.start(only=("vms",))
        local.start_ingress("eks")
        fleet = hybrid_fleet(local, k8s)  # after start: the ports in use
        load.url = local.edge_url
        eks_zone = next(z for z in local.zones if z.name == "eks")
        mesh = ZoneMesh(k8s.server, kubelet, "shop", "eks", local.zdir("eks") / "envoy",
                        f"127.0.0.1:{eks_zone.admin_port}")

        async def scenario() -> float:
            parts = hub_parts.build(fleet, tmp_path / "hub")
            worker = RolloutWorker(canary.key, parts, MemoryStore(), listener=reports.append)
            try:
                await parts.sync()
                controllers(lf, kubelet, mesh)
                t0 = time.monotonic()
                deadline = t0 + 150
                while time.monotonic() < deadline:
                    await parts.sync()
                    report = await worker.tick(canary)
                    controllers(lf, kubelet, mesh)
                    phase = report.decision.status.phase
                    if phase in (Phase.SUCCEEDED, Phase.FAILED):
                        break
                    if phase is Phase.INITIALIZED and not load.is_alive():
                        load.start()  # v1 serves on the VMs: traffic from here on
                    await asyncio.sleep(0.2)  # the hub's tick interval
                took = time.monotonic() - t0
                await asyncio.sleep(1.0)  # requests after the last step
                load.halt.set()
                final = reports[-1].decision.status
                assert final.phase is Phase.SUCCEEDED, (final.message, [r.error for r in reports if r.error][-3:])
                # The VMs ran v1 (the agent's instances, ready) until the finalising step retired it.
                assert any(r.zones["vms"].ready_percent("frontend", "v1") == 100.0 for r in reports if "vms" in r.zones)
                vms = await parts.zones["vms"].observe(canary, final.step)
                assert vms.applied_step() == final.step and vms.ready_percent("frontend", "v1") is None
                eks = await parts.zones["eks"].observe(canary, final.step)
                assert eks.applied_step() == final.step and eks.ready_percent("frontend", "v1") == 100.0
                return took
            finally:
                await parts.close()

        took = asyncio.run(scenario())
    finally:
        load.halt.set()
        if load.is_alive():
            load.join(10)
        kubelet.stop()
        pods.stop_all()
        local.stop()

    # From the edge: every request answered 200, by v1 on the VMs and then on eks, eks alone at the end.
    assert set(load.codes) == {"200"} and load.codes["200"] > 50, load.codes
    assert {"frontend v1 zone=vms", "frontend v1 zone=eks"} <= set(load.answers)
    assert set(load.answers[-20:]) == {"frontend v1 zone=eks"}
    steps = [r.decision.status.step for r in reports]
    phases = list(dict.fromkeys(r.decision.status.phase for r in reports))
    assert phases == [Phase.INITIALIZING, Phase.INITIALIZED, Phase.PROGRESSING, Phase.PROMOTING,
                      Phase.FINALISING, Phase.SUCCEEDED]
    # From Git: v1's Deployment is in eks's repo (and applied) before the mesh gives eks any weight.
    eks_log = gitlog.commits(bare, oldest_first=True)
    first = next(i for i, c in enumerate(eks_log)
                 if "deploy/frontend/frontend-v1.yaml" in flux.git(bare, "show", "--name-only", "--format=", c["sha"]))
    mesh_log = [c for c in gitlog.commits(local.git_url("mesh"), oldest_first=True) if "Step" in c]
    weighted = next(c for c in mesh_log if "eks/v1=" in c.get("Weights", "") and "eks/v1=0" not in c["Weights"])
    assert int(eks_log[first]["Step"]) < int(weighted["Step"])
    assert mesh_log[-1]["Stage"] == "finalising" and "vms/v1=0" in mesh_log[-1]["Weights"]
    # The VMs' ZoneRelease no longer serves v1; eks's serves it with all of eks's traffic.
    vms_rel = yaml.safe_load(flux.git(Path(local.git_url("vms")), "show", "main:frontend.yaml"))
    assert vms_rel["spec"]["serving"] == {}
    eks_rel = yaml.safe_load(flux.git(bare, "show", "main:frontend.yaml"))
    assert eks_rel["spec"]["serving"] == {"v1": 10000}
    # From the API: the Deployment Flux applied is the hub's rendering of eks's v1, valid, at the
    # revision Flux reports.
    dep = k8s.admin.apps.read_namespaced_deployment("frontend-v1", "shop")
    assert dep.spec.template.spec.containers[0].image == "registry.example.com/shop/frontend:1.0.0"
    assert dep.metadata.labels["app.kubernetes.io/managed-by"] == "federation"
    for d in fluxlocal.build(lf.repo, "deploy"):
        validate_kubernetes(d)
    g, v, p = kube.FLUX_KS
    ks = k8s.admin.custom.get_namespaced_custom_object(g, v, "flux-system", p, "eks")
    assert ks["status"]["lastAppliedRevision"] == f"main@sha1:{flux.head(bare)}"
    # The edge sends everything to eks.
    rds = json.loads((local.workdir / "edge" / "rds.json").read_text())
    clusters = rds["resources"][0]["virtual_hosts"][0]["routes"][-1]["route"]["weighted_clusters"]["clusters"]
    assert [c["name"] for c in clusters] == ["zone-eks"]
    print(f"\nhybrid migration: {len(reports)} ticks, {max(steps)} steps, {took:.1f} s, "
          f"{sum(load.codes.values())} requests at the edge, {load.codes}")


def test_a_stalled_flux_in_the_kubernetes_zone_rolls_the_rollout_back_at_its_deadline(tmp_path: Path, k8s: Cluster):
    """Flux on eks stops applying once the canary has traffic (a team's commit breaks the build: its
    Kustomization Stalled, BuildFailed): no later step counts, the reason ``fedctl status`` shows is Flux's, and the progress deadline rolls back."""
    local = LocalFleet(tmp_path / "fleet")
    local.prepare()
    bare = Path(local.git_url("eks"))
    flux.create_example(k8s, "eks")
    lf = LocalFlux(k8s.server, gitrepo.Repo(str(bare), "main", tmp_path / "flux-clone"), "eks")
    pods = Supervisor(tmp_path / "pods")
    kubelet = LocalKubelet(k8s.server, "shop", "eks", pods, str(Path(sys.executable).parent / "fed-demo-app"))
    doc = json.loads(json.dumps(CANARY))
    doc["spec"]["progressDeadlineSeconds"] = 15
    canary = specs.FederatedCanary.model_validate(doc)
    reports: list[TickReport] = []
    try:
        local.start(only=("vms",))
        fleet = hybrid_fleet(local, k8s, ingress_admin=False)  # after start: the ports in use

        async def scenario() -> None:
            parts = hub_parts.build(fleet, tmp_path / "hub")
            worker = RolloutWorker(canary.key, parts, MemoryStore(), listener=reports.append)
            stalled_at: int | None = None
            try:
                await parts.sync()
                controllers(lf, kubelet)
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    await parts.sync()
                    report = await worker.tick(canary)
                    status = report.decision.status
                    if status.phase in (Phase.SUCCEEDED, Phase.FAILED):
                        break
                    if stalled_at is None and status.phase is Phase.PROGRESSING and status.canary_weight > 0:
                        stalled_at = status.step  # Flux applied the steps before; from here its build fails
                        human = gitrepo.Repo(str(bare), "main", tmp_path / "human")
                        human.ensure()

                        def breaks(r: gitrepo.Repo) -> list[str]:
                            p = r.workdir / "deploy" / "kustomization.yaml"
                            p.write_text(p.read_text() + "- quota.yaml  # not committed: the build fails\n")
                            return ["deploy/kustomization.yaml"]

                        assert human.commit_and_push(breaks, "add a quota", author="Dev <dev@localhost>")
                    controllers(lf, kubelet)
                    await asyncio.sleep(0.2)
                final = reports[-1].decision.status
                assert stalled_at is not None
                assert final.phase is Phase.FAILED, final.message
                # The mesh waits for the zones it sends to: never live at a step eks did not apply.
                assert "progress deadline exceeded: zones eks, mesh have not applied step" in final.message
                # Nothing counted past the stall: the last weight the canary had is the stalled step's.
                weights = [r.decision.status.canary_weight for r in reports
                           if r.decision.status.phase is Phase.PROGRESSING]
                assert max(weights) == 5000
                # What `fedctl status` shows for eks while it waited.
                waiting = [r for r in reports if r.status.step == stalled_at and r.observations is not None]
                assert waiting
                why = reasons.reasons(waiting[-1].status.step, dict(waiting[-1].observations.applied),
                                      waiting[-1].zones)
                assert why["eks"].startswith("Flux: BuildFailed: kustomize build failed: deploy/kustomization.yaml: "
                                             "resource 'quota.yaml' not found"), why
                assert "vms" not in why
            finally:
                await parts.close()

        asyncio.run(scenario())
    finally:
        kubelet.stop()
        pods.stop_all()
        local.stop()


def test_an_image_bump_in_the_kubernetes_zone_restarts_the_analysis_mid_rollout(tmp_path: Path, k8s: Cluster):
    """v1@vms -> v2@eks; at 50% CI pushes a new image for v2 to eks's repo. The canary's checksum
    (part of the rollout's identity) changes: the analysis restarts from 0%, the next step renders
    the new image, and the rollout promotes the new build."""
    local = LocalFleet(tmp_path / "fleet")
    local.prepare()
    bare = Path(local.git_url("eks"))
    flux.create_example(k8s, "eks")
    lf = LocalFlux(k8s.server, gitrepo.Repo(str(bare), "main", tmp_path / "flux-clone"), "eks")
    pods = Supervisor(tmp_path / "pods")
    kubelet = LocalKubelet(k8s.server, "shop", "eks", pods, str(Path(sys.executable).parent / "fed-demo-app"))
    doc = json.loads(json.dumps(CANARY))
    doc["spec"]["canary"]["version"] = "v2"
    reports: list[TickReport] = []
    try:
        local.start(only=("vms",))
        fleet = hybrid_fleet(local, k8s, ingress_admin=False)  # after start: the ports in use

        async def scenario() -> None:
            parts = hub_parts.build(fleet, tmp_path / "hub")
            worker = RolloutWorker("shop/frontend", parts, MemoryStore(), listener=reports.append)
            bumped = False
            try:
                await parts.sync()
                controllers(lf, kubelet)
                deadline = time.monotonic() + 150
                while time.monotonic() < deadline:
                    await parts.sync()
                    canary = specs.FederatedCanary.model_validate(doc)  # as discovery reads it, checksum included
                    canary.spec.with_checksum(await meshrepo.canary_checksum(canary.spec, parts.repos))
                    report = await worker.tick(canary)
                    controllers(lf, kubelet)
                    status = report.decision.status
                    if status.phase in (Phase.SUCCEEDED, Phase.FAILED):
                        break
                    if not bumped and status.canary_weight == 5000 and status.converged_at is not None:
                        human = gitrepo.Repo(str(bare), "main", tmp_path / "human")
                        human.ensure()

                        def bump(r: gitrepo.Repo) -> list[str]:
                            p = r.workdir / "frontend.yaml"
                            p.write_text(p.read_text().replace("frontend:2.0.0", "frontend:2.0.1"))
                            return ["frontend.yaml"]

                        assert human.commit_and_push(bump, "frontend v2: image 2.0.1 (CI)", author="CI <ci@localhost>")
                        bumped = True
                    await asyncio.sleep(0.2)
            finally:
                await parts.close()

        asyncio.run(scenario())
    finally:
        kubelet.stop()
        pods.stop_all()
        local.stop()

    final = reports[-1].decision.status
    assert final.phase is Phase.SUCCEEDED, final.message
    restarts = [a for r in reports for a in r.decision.actions if isinstance(a, Emit) and a.reason == "Restart"]
    assert len(restarts) == 1 and "revision" in restarts[0].message
    weights = [r.decision.status.canary_weight for r in reports]
    at = weights.index(5000)
    assert 0 in weights[at:]  # back to 0% after the bump, then up again
    dep = k8s.admin.apps.read_namespaced_deployment("frontend-v2", "shop")
    assert dep.spec.template.spec.containers[0].image == "registry.example.com/shop/frontend:2.0.1"
    assert dep.metadata.generation == 2  # rendered twice: the first build, then the bump
    assert final.target.startswith("v1@vms->v2@eks#")
