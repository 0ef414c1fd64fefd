"""The hub's mesh route on a mesh with a global control plane (Kuma here), through the official
client against a real kube-apiserver with the hub's ServiceAccount token (clusters/hub/
member/ and mesh/): direct mode (server-side apply, live once the objects
carry the step) and GitOps mode (committed to the mesh repo, live once Flux there reports a revision
holding it). The API server validates every object the hub applies against Kuma's CRD."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
import yaml

from federation.core import spec as specs
from federation.core.state import SetWeights
from federation.core.weights import subsets_for
from federation.gitops import repo as gitrepo
from federation.hub import parts as hub_parts
from federation.runtimes import kubernetes as kube
from federation.runtimes.routes import MESH, STEP_ANNOTATION
from tests import fleets, schemas
from tests.integration import flux
from tests.real_kube import Cluster

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
G, V, P = "kuma.io", "v1alpha1", "meshhttproutes"


def setup(tmp_path: Path, k8s: Cluster, mode: str) -> tuple[specs.Fleet, specs.FederatedCanary, kube.Api]:
    """The fleet (the hub reaches the mesh with its own token) and the admin's client (Flux, humans)."""
    kc = k8s.member_kc.path
    api = k8s.admin
    flux.seed_zone_repo(tmp_path)
    flux.create(api, "eks")  # the zone's Flux objects (their status is played by ``step``)
    mesh_seed = tmp_path / "mesh-seed"
    mesh_seed.mkdir()
    (mesh_seed / "README.md").write_text("mesh routes, written by the federation hub\n")
    gitrepo.init_bare_seeded(tmp_path / "mesh.git", mesh_seed)
    fleet = fleets.fleet([fleets.kube_zone("eks", str(tmp_path / "eks.git"), kc)],
                         {"provider": "kuma", "git": {"url": str(tmp_path / "mesh.git")}, "apply": mode,
                          "kubeconfig": {"path": kc, "context": "member"}}, name="k")
    canary = specs.FederatedCanary.model_validate({
        "apiVersion": specs.API_VERSION, "kind": "FederatedCanary", "metadata": {"name": "frontend", "namespace": "shop"},
        "spec": {"service": {"name": "frontend"}, "primary": {"version": "v1", "zones": ["eks"]},
                 "canary": {"version": "v2", "zones": ["eks"]}, "analysis": {"stepWeight": 20, "metrics": []}}})
    return fleet, canary, api


def action(canary: specs.FederatedCanary, fleet: specs.Fleet, step: int, weight: int) -> SetWeights:
    return SetWeights(step, "analysis", weight, 0, False, tuple(sorted(subsets_for(canary.spec, weight, fleet).items())),
                      reason="test")


async def step(ad: hub_parts.Parts, api: kube.Api, canary: specs.FederatedCanary, fleet: specs.Fleet, tmp_path: Path,
               n: int, weight: int) -> dict[str, str]:
    """A step as the worker carries it out: the zone first (its Flux, played here, applies the
    commit), then the mesh route, which waits for the zone (``advance``, as at the next tick)."""
    ad.executor.zone_timeout = 0.0
    commits = dict((await ad.executor.apply_step(canary, action(canary, fleet, n, weight))).commits)
    assert MESH not in commits  # not before the zone applied the step
    flux.applied(api, "eks", flux.head(tmp_path / "eks.git"))
    await ad.executor.advance(canary.key, commits)
    return commits


def routes(api: kube.Api) -> list[dict]:
    return api.custom.list_cluster_custom_object(G, V, P)["items"]


def weights_of(route: dict) -> dict[str, int]:
    out = {}
    rule = route["spec"]["to"][0]["rules"][-1]  # the catch-all rule carries the weighted split
    for ref in rule["default"]["backendRefs"]:
        labels = ref["labels"]
        out[labels["kuma.io/zone"] + "/" + labels["kuma.io/display-name"].rsplit("-", 1)[1]] = ref["weight"]
    return out


def test_direct_mode_server_side_applies_the_route(tmp_path: Path, k8s: Cluster):
    fleet, canary, api = setup(tmp_path, k8s, "direct")

    async def scenario() -> None:
        ad = hub_parts.build(fleet, tmp_path / "hub")
        try:
            await ad.sync()
            assert await ad.executor.mesh_step(canary, 0) is None  # nothing applied yet
            commits = await step(ad, api, canary, fleet, tmp_path, 3, 2000)
            assert set(commits) == {"eks", "mesh"}
            (route,) = routes(api)
            schemas.validate({k: route[k] for k in ("apiVersion", "kind", "spec")} |
                             {"metadata": {"name": route["metadata"]["name"]}})
            assert route["metadata"]["annotations"][STEP_ANNOTATION] == "3"
            assert await ad.executor.mesh_step(canary, 3) == 3
            rv = route["metadata"]["resourceVersion"]
            await step(ad, api, canary, fleet, tmp_path, 4, 4000)
            (route,) = routes(api)
            assert route["metadata"]["resourceVersion"] != rv  # applied again, not created twice
            assert await ad.executor.mesh_step(canary, 4) == 4
            shares = weights_of(route)
            assert sum(v for k, v in shares.items() if k.endswith("/v2")) * 10000 // sum(shares.values()) == 4000
            # The mesh repo holds the same route (the record of the step).
            text = subprocess.run(["git", "--git-dir", str(tmp_path / "mesh.git"), "show", "main:routes/frontend.yaml"],
                                  capture_output=True, text=True, check=True).stdout
            (committed,) = [d for d in yaml.safe_load_all(text) if d]
            assert committed["spec"] == route["spec"]
            # Somebody deletes the route: the step no longer counts as live.
            api.custom.delete_namespaced_custom_object(G, V, route["metadata"]["namespace"], P, route["metadata"]["name"])
            assert await ad.executor.mesh_step(canary, 4) is None
        finally:
            await ad.close()

    asyncio.run(scenario())


def test_gitops_mode_waits_for_flux_on_the_global_control_plane(tmp_path: Path, k8s: Cluster):
    fleet, canary, api = setup(tmp_path, k8s, "gitops")
    flux.create(api, "mesh")
    g, v, p = kube.FLUX_KS

    def flux_applies(rev: str) -> None:
        flux.applied(api, "mesh", rev)

    async def scenario() -> None:
        ad = hub_parts.build(fleet, tmp_path / "hub")
        try:
            await ad.sync()
            before = await ad.mesh.head()
            flux_applies(before)
            commits = await step(ad, api, canary, fleet, tmp_path, 3, 2000)
            assert routes(api) == []  # the hub does not apply it: Flux does
            ks = api.custom.get_namespaced_custom_object(g, v, "flux-system", p, "mesh")
            assert kube.RECONCILE in ks["metadata"]["annotations"]
            assert await ad.executor.mesh_step(canary, 3) == 0  # Flux is behind our commit
            flux_applies(commits["mesh"])
            assert await ad.executor.mesh_step(canary, 3) == 3
            flux.report(api, "mesh", commits["mesh"], ready="False", reason="BuildFailed")
            assert await ad.executor.mesh_step(canary, 3) is None  # a failing reconciliation is not live
        finally:
            await ad.close()

    asyncio.run(scenario())


def test_a_mesh_without_its_control_plane_is_refused(tmp_path: Path, k8s: Cluster):
    fleet, _, _ = setup(tmp_path, k8s, "direct")
    doc = fleet.model_dump(by_alias=True, exclude_none=True, mode="json")
    del doc["spec"]["mesh"]["kubeconfig"]
    broken = specs.Fleet.model_validate(doc)
    with pytest.raises(Exception, match=r"mesh.kubeconfig .* is required to apply routes"):
        hub_parts.build(broken, tmp_path / "hub2")
