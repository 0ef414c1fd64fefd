"""The hub on a Kubernetes zone, against a real kube-apiserver: each step's commit holds the
ZoneRelease's serving and the workloads it implies (each served version's Deployment and Service,
the zone's HTTPRoute) under deploy/, the path Flux applies; Flux's part is played by
``demo.fluxlocal.LocalFlux`` (server-side apply as the zone's ServiceAccount,
clusters/hub/zone-flux.yaml, prune, Flux's status); the Deployment controller's by the
test writing Deployment status. The hub reads with its own token (clusters/hub/member/member-cluster.yaml):
Flux's applied revision mapped back to our step, readiness and ProgressDeadlineExceeded from the
Deployments it rendered. Retired versions leave the repo, and Flux prunes them from the cluster."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from federation.core import spec as specs
from federation.core.state import SetWeights, Stage
from federation.core.steps import StepRecord
from federation.core.weights import Subset, subsets_for
from federation.demo import fluxlocal
from federation.demo.fleet import LocalFleet
from federation.demo.fluxlocal import LocalFlux
from federation.demo.procs import wait_for
from federation.gitops import meshrepo
from federation.gitops import repo as gitrepo
from federation.hub import parts as hub_parts
from federation.runtimes import kubernetes as kube
from tests import fleets
from tests.integration import flux
from tests.integration.conftest import free_port
from tests.real_kube import Cluster, condition, deployment, deployment_status
from tests.schemas import validate_kubernetes
from vmagent import envoy as zone_envoy

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CANARY = {
    "apiVersion": specs.API_VERSION, "kind": "FederatedCanary", "metadata": {"name": "frontend", "namespace": "shop"},
    "spec": {"service": {"name": "frontend", "port": 8080}, "primary": {"version": "v1", "zones": ["eks"]},
             "canary": {"version": "v2", "zones": ["eks"]},
             "analysis": {"stepWeight": 20, "canaryReadyThreshold": 50, "metrics": []}}}


def setup(tmp_path: Path, k8s: Cluster) -> tuple[specs.Fleet, LocalFlux, Path]:
    bare = flux.seed_zone_repo(tmp_path)
    gitrepo.init_bare_seeded(tmp_path / "mesh.git", ROOT / "clusters" / "mesh")
    flux.create_example(k8s, "eks")
    fleet = fleets.fleet([fleets.kube_zone("eks", str(bare), k8s.member_kc.path)],
                         fleets.envoy_mesh(str(tmp_path / "mesh.git"), edge={
                             "rdsPath": str(tmp_path / "edge" / "rds.json"),
                             "admin": {"address": "127.0.0.1", "port": free_port()}}), name="k")
    return fleet, LocalFlux(k8s.server, gitrepo.Repo(str(bare), "main", tmp_path / "flux-clone"), "eks"), bare


def flux_applies(lf: LocalFlux) -> str:
    """Flux reconciles: the head applied as the zone's ServiceAccount, its status written."""
    lf.reconcile()
    assert lf.applied is not None
    return lf.applied


def action(canary: specs.FederatedCanary, fleet: specs.Fleet, step: int, bp: int) -> SetWeights:
    return SetWeights(step, "analysis", bp, 0, False, tuple(sorted(subsets_for(canary.spec, bp, fleet).items())),
                      reason="test")


def test_kubernetes_zone_runs_versions_through_git_and_flux(tmp_path: Path, k8s: Cluster):
    fleet, lf, bare = setup(tmp_path, k8s)
    api = k8s.admin
    canary = specs.FederatedCanary.model_validate(CANARY)
    g, v, p = kube.FLUX_KS

    async def scenario() -> None:
        ad = hub_parts.build(fleet, tmp_path / "hub")
        try:
            await ad.sync()
            flux_applies(lf)  # the seed: nothing of frontend's yet
            ad.executor.zone_timeout = 0.0  # Flux is played below: the mesh waits for the zone (advance)
            result = await ad.executor.apply_step(canary, action(canary, fleet, 1, 0))
            assert set(result.commits) == {"eks"}  # the mesh follows once the zone applied the step
            files = set(flux.git(bare, "show", "--name-only", "--format=", result.commits["eks"]).split())
            assert files == {"frontend.yaml", "deploy/kustomization.yaml", "deploy/frontend/kustomization.yaml",
                             "deploy/frontend/frontend.yaml", "deploy/frontend/frontend-v1.yaml",
                             "deploy/frontend/frontend-v2.yaml",
                             "deploy/frontend/frontend-route.yaml"}
            top = flux.git(bare, "show", "main:deploy/kustomization.yaml")
            assert top.startswith("# What the eks cluster's Flux") and "resources:\n- frontend\n" in top
            ks = api.custom.get_namespaced_custom_object(g, v, "flux-system", p, "eks")
            assert kube.RECONCILE in ks["metadata"]["annotations"]  # Flux was asked to reconcile now
            st = await ad.zones["eks"].observe(canary, 1)
            assert st.applied_step() == 0  # Flux has not applied our commit yet: behind
            assert st.ready_percent("frontend", "v2") is None and "frontend-v2 not found" in st.reasons()[0]

            assert flux_applies(lf) == result.commits["eks"]
            applied = fluxlocal.build(lf.repo, "deploy")
            kinds = sorted((d["kind"], d["metadata"]["name"]) for d in applied)
            assert kinds == [("Deployment", "frontend-v1"), ("Deployment", "frontend-v2"), ("HTTPRoute", "frontend-eks"),
                             ("Service", "frontend"), ("Service", "frontend-v1"), ("Service", "frontend-v2")]
            for d in applied:
                validate_kubernetes(d)
            dep = api.apps.read_namespaced_deployment("frontend-v2", "shop")
            assert dep.spec.replicas == 2 and dep.spec.template.metadata.labels == {"app": "frontend", "version": "v2"}
            assert dep.spec.template.spec.containers[0].image == "registry.example.com/shop/frontend:2.0.0"
            # The Deployment controller's part: v1 fully available, v2 half.
            deployment_status(api, "shop", "frontend-v1", 2, 2)
            deployment_status(api, "shop", "frontend-v2", 1, 2)
            st = await ad.zones["eks"].observe(canary, 1)
            assert st.applied_step() == 1
            assert st.ready_percent("frontend", "v1") == 100.0 and st.ready_percent("frontend", "v2") == 50.0
            mesh: dict[str, str] = {}
            await ad.executor.advance(canary.key, mesh)
            assert set(mesh) == {"mesh"}

            # A weight step changes the serving and the zone's route, never a Deployment (no restart).
            result = await ad.executor.apply_step(canary, action(canary, fleet, 3, 2000))
            files = set(flux.git(bare, "show", "--name-only", "--format=", result.commits["eks"]).split())
            assert files == {"frontend.yaml", "deploy/frontend/frontend-route.yaml"}
            text = flux.git(bare, "show", "main:frontend.yaml")
            assert "v1: 8000" in text and "v2: 2000" in text
            flux_applies(lf)
            route = api.custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", "shop", "httproutes",
                                                            "frontend-eks")
            assert [(b["name"], b["weight"]) for b in route["spec"]["rules"][-1]["backendRefs"]] == \
                [("frontend-v1", 8000), ("frontend-v2", 2000)]
            assert api.apps.read_namespaced_deployment("frontend-v2", "shop").metadata.generation == 1
            st = await ad.zones["eks"].observe(canary, 3)
            assert st.applied_step() == 3 and st.failed("frontend", "v2") == ""

            # The canary Deployment the hub rendered gives up (its own progressDeadlineSeconds):
            # reported as a failure of the canary, which the core rolls back at once.
            deployment_status(api, "shop", "frontend-v2", 1, 2, [
                condition("Progressing", "False", "ProgressDeadlineExceeded")])
            st = await ad.zones["eks"].observe(canary, 3)
            assert "ProgressDeadlineExceeded" in st.failed("frontend", "v2")
            assert st.failed("frontend", "v1") == ""

            # Rollback: v2 retired. Its files leave the repo in the step's commit; Flux prunes it.
            weights = tuple(sorted(subsets_for(canary.spec, 0, fleet).items()))
            rec = StepRecord("shop/frontend", 4, Stage.ROLLBACK, 0, weights, retire=(Subset("eks", "v2"),))
            sha = await ad.zones["eks"].commit(canary, rec, rec.message("frontend", "v2", "rollback"))
            assert sha is not None
            files = set(flux.git(bare, "show", "--name-only", "--format=", sha).split())
            assert "deploy/frontend/frontend-v2.yaml" in files
            tree = flux.git(bare, "ls-tree", "-r", "--name-only", "main").split()
            assert "deploy/frontend/frontend-v2.yaml" not in tree and "deploy/frontend/frontend-v1.yaml" in tree
            flux_applies(lf)
            names = [d.metadata.name for d in api.apps.list_namespaced_deployment("shop").items]
            assert names == ["frontend-v1"]
            assert "frontend-v2" not in [s.metadata.name for s in api.core.list_namespaced_service("shop").items]
            route = api.custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", "shop", "httproutes",
                                                            "frontend-eks")
            assert [(b["name"], b["weight"]) for b in route["spec"]["rules"][-1]["backendRefs"]] == [("frontend-v1", 10000)]
        finally:
            await ad.close()

    asyncio.run(scenario())


def test_an_image_bump_is_a_new_revision_and_a_new_deployment(tmp_path: Path, k8s: Cluster):
    fleet, lf, bare = setup(tmp_path, k8s)
    canary = specs.FederatedCanary.model_validate(CANARY)
    api = k8s.admin

    async def scenario() -> None:
        ad = hub_parts.build(fleet, tmp_path / "hub")
        try:
            await ad.sync()
            before = await meshrepo.canary_checksum(canary.spec, ad.repos)
            await ad.executor.apply_step(canary, action(canary, fleet, 1, 0))
            flux_applies(lf)
            assert api.apps.read_namespaced_deployment("frontend-v2", "shop").metadata.generation == 1

            # CI pushes a new image for v2 in the zone repo (spec.versions: what humans own).
            human = tmp_path / "human"
            gitrepo.Repo(str(bare), "main", human).ensure()
            path = human / "frontend.yaml"
            path.write_text(path.read_text().replace("frontend:2.0.0", "frontend:2.0.1"))
            flux.git(human / ".git", "--work-tree", str(human), "commit", "-qam", "frontend v2: image 2.0.1")
            flux.git(human / ".git", "push", "-q", "origin", "HEAD:main")
            await ad.sync()
            after = await meshrepo.canary_checksum(canary.spec, ad.repos)
            assert after != before  # the rollout's identity changes: its analysis restarts
            await ad.executor.apply_step(canary.model_copy(), action(canary, fleet, 2, 0))
            flux_applies(lf)
            dep = api.apps.read_namespaced_deployment("frontend-v2", "shop")
            assert dep.spec.template.spec.containers[0].image == "registry.example.com/shop/frontend:2.0.1"
            assert dep.metadata.generation == 2  # a new rollout of the Deployment: new pods
            assert api.apps.read_namespaced_deployment("frontend-v1", "shop").metadata.generation == 1
        finally:
            await ad.close()

    asyncio.run(scenario())


def test_readiness_counts_only_the_deployments_the_hub_rendered(tmp_path: Path, k8s: Cluster):
    """A Deployment of the right name that the hub did not render (no managed-by label) is not
    counted, nor is its ProgressDeadlineExceeded; one the zone repo has moved on from (another
    image, Flux not there yet) is 0% ready until it runs the repo's image."""
    fleet, lf, bare = setup(tmp_path, k8s)
    canary = specs.FederatedCanary.model_validate(CANARY)
    api = k8s.admin

    async def scenario() -> None:
        ad = hub_parts.build(fleet, tmp_path / "hub")
        try:
            await ad.sync()
            # Somebody's own frontend-v2, made by hand: right name and app/version labels, not ours.
            deployment(api, "shop", "frontend-v2", 2, {"app": "frontend", "version": "v2"})
            deployment_status(api, "shop", "frontend-v2", 2, 2, [
                condition("Progressing", "False", "ProgressDeadlineExceeded")])
            flux_applies(lf)
            st = await ad.zones["eks"].observe(canary, 0)
            assert st.ready_percent("frontend", "v2") is None and st.failed("frontend", "v2") == ""
            assert any("frontend-v2 was not rendered by the hub" in r for r in st.reasons())
            api.apps.delete_namespaced_deployment("frontend-v2", "shop")

            await ad.executor.apply_step(canary, action(canary, fleet, 1, 0))
            flux_applies(lf)
            deployment_status(api, "shop", "frontend-v1", 2, 2)
            deployment_status(api, "shop", "frontend-v2", 2, 2)
            st = await ad.zones["eks"].observe(canary, 1)
            assert st.ready_percent("frontend", "v2") == 100.0
            # v2's image is bumped in the zone repo; the cluster still runs 2.0.0.
            human = tmp_path / "human"
            gitrepo.Repo(str(bare), "main", human).ensure()
            path = human / "frontend.yaml"
            path.write_text(path.read_text().replace("frontend:2.0.0", "frontend:2.0.1"))
            flux.git(human / ".git", "--work-tree", str(human), "commit", "-qam", "frontend v2: image 2.0.1")
            flux.git(human / ".git", "push", "-q", "origin", "HEAD:main")
            await ad.sync()
            st = await ad.zones["eks"].observe(canary, 1)
            assert st.ready_percent("frontend", "v2") == 0.0 and st.ready_percent("frontend", "v1") == 100.0
            assert any("runs registry.example.com/shop/frontend:2.0.0, the zone repo has "
                       "registry.example.com/shop/frontend:2.0.1" in r for r in st.reasons())
            # The bump is a new revision: the hub's next step renders it, Flux applies it.
            await ad.executor.apply_step(canary, action(canary, fleet, 2, 0))
            flux_applies(lf)
            deployment_status(api, "shop", "frontend-v2", 2, 2, observed=2)
            st = await ad.zones["eks"].observe(canary, 1)
            assert st.ready_percent("frontend", "v2") == 100.0
        finally:
            await ad.close()

    asyncio.run(scenario())


def test_a_zone_is_ready_only_once_its_ingress_routes_the_service(tmp_path: Path, k8s: Cluster):
    """Pods turn Ready (the Deployment says so) before the zone's mesh has their endpoints; the
    edge sending traffic to the zone then meets an ingress route to nothing (Envoy's 503). With the
    zone's ingress admin named in the fleet, the zone counts ready only once that real Envoy routes
    the service to some cluster; the reason says what is awaited."""
    bare = flux.seed_zone_repo(tmp_path)
    gitrepo.init_bare_seeded(tmp_path / "mesh.git", ROOT / "clusters" / "mesh")
    flux.create_example(k8s, "eks")
    local = LocalFleet(tmp_path / "fleet")
    local.prepare()
    eks = next(z for z in local.zones if z.name == "eks")
    canary = specs.FederatedCanary.model_validate(CANARY)
    api = k8s.admin
    envoy_dir = str(local.zdir("eks") / "envoy")
    try:
        local.start_ingress("eks")
        # What the zone's Envoy starts with: the service's route to nothing (no ready endpoints).
        zone_envoy.write(zone_envoy.route_path(envoy_dir, "frontend"), zone_envoy.render_route("frontend", [], "empty"))
        wait_for(lambda: zone_envoy.Admin(f"127.0.0.1:{eks.admin_port}").route_version("ingress", "frontend")
                 == "empty", 30, "eks ingress route")
        fleet = fleets.fleet([fleets.kube_zone("eks", str(bare), k8s.member_kc.path, ingress={
            "address": "127.0.0.1", "port": eks.ingress_port, "adminPort": eks.admin_port})],
            fleets.envoy_mesh(str(tmp_path / "mesh.git"), edge={
                "rdsPath": str(tmp_path / "edge" / "rds.json"), "admin": {"address": "127.0.0.1", "port": free_port()}}),
            name="k")
        lf = LocalFlux(k8s.server, gitrepo.Repo(str(bare), "main", tmp_path / "flux-clone"), "eks")

        async def scenario() -> None:
            ad = hub_parts.build(fleet, tmp_path / "hub")
            try:
                await ad.sync()
                await ad.executor.apply_step(canary, action(canary, fleet, 1, 0))
                flux_applies(lf)
                deployment_status(api, "shop", "frontend-v1", 2, 2)
                deployment_status(api, "shop", "frontend-v2", 2, 2)
                st = await ad.zones["eks"].observe(canary, 1)
                assert st.applied_step() == 1
                assert st.ready_percent("frontend", "v1") == 0.0 and st.ready_percent("frontend", "v2") == 0.0
                assert any(f"zone ingress 127.0.0.1:{eks.admin_port} routes frontend nowhere yet" in r
                           for r in st.reasons())
                # The mesh programs the ingress: clusters with the pods' endpoints, then the route.
                endpoints = {zone_envoy.cluster_name("frontend", "v1"): [free_port()]}
                zone_envoy.write(zone_envoy.clusters_path(envoy_dir), zone_envoy.render_clusters(endpoints, "c1"))
                admin = zone_envoy.Admin(f"127.0.0.1:{eks.admin_port}")
                await asyncio.to_thread(wait_for, lambda: admin.clusters_version() == "c1", 30, "eks clusters")
                zone_envoy.write(zone_envoy.route_path(envoy_dir, "frontend"), zone_envoy.render_route(
                    "frontend", [(zone_envoy.cluster_name("frontend", "v1"), 100)], "r1"))
                await asyncio.to_thread(wait_for, lambda: admin.route_version("ingress", "frontend") == "r1", 30,
                                        "eks route")
                st = await ad.zones["eks"].observe(canary, 1)
                assert st.ready_percent("frontend", "v1") == 100.0 and st.ready_percent("frontend", "v2") == 100.0
                assert not any("zone ingress" in r for r in st.reasons())
                # The ingress away (its admin does not answer): not ready, and why.
                local.sup.stop(next(p for p in local.sup.procs if p.name == "envoy-eks"))
                st = await ad.zones["eks"].observe(canary, 1)
                assert st.ready_percent("frontend", "v2") == 0.0
                assert any(f"zone ingress: admin 127.0.0.1:{eks.admin_port}: " in r for r in st.reasons()), st.reasons()
            finally:
                await ad.close()

        asyncio.run(scenario())
    finally:
        local.stop()
