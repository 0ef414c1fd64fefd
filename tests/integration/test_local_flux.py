"""The local Flux stand-in (``demo.fluxlocal``) on the real kube-apiserver, driven by the hub's own
calls: the zone's Flux objects are clusters/flux/zone-eks.yaml; a new commit or the hub's
``requestedAt`` is applied as the Kustomization's ServiceAccount (clusters/hub/zone-flux.yaml),
pruned, and reported as Flux reports it; a build failure is Stalled; an object that account may
not apply leaves the Kustomization not Ready with the API server's 403."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from federation.core import spec as specs
from federation.core.state import SetWeights, Stage
from federation.core.steps import StepRecord
from federation.core.weights import Subset, subsets_for
from federation.demo.fluxlocal import LocalFlux
from federation.gitops import repo as gitrepo
from federation.hub import parts as hub_parts
from federation.runtimes import kubernetes as kube
from tests import fleets
from tests.integration import flux
from tests.integration.conftest import free_port
from tests.real_kube import Cluster

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CANARY = {
    "apiVersion": specs.API_VERSION, "kind": "FederatedCanary", "metadata": {"name": "frontend", "namespace": "shop"},
    "spec": {"service": {"name": "frontend", "port": 8080}, "primary": {"version": "v1", "zones": ["eks"]},
             "canary": {"version": "v2", "zones": ["eks"]}, "analysis": {"stepWeight": 20, "metrics": []}}}


def ks_status(k8s: Cluster) -> dict:
    g, v, p = kube.FLUX_KS
    return k8s.admin.custom.get_namespaced_custom_object(g, v, "flux-system", p, "eks")


def conditions(obj: dict) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in obj["status"]["conditions"]}


def human_push(tmp_path: Path, bare: Path, path: str, text: str) -> None:
    clone = gitrepo.Repo(str(bare), "main", tmp_path / "human")
    clone.ensure()

    def edit(r: gitrepo.Repo) -> list[str]:
        (r.workdir / path).parent.mkdir(parents=True, exist_ok=True)
        (r.workdir / path).write_text(text)
        return [path]

    assert clone.commit_and_push(edit, f"edit {path}", author="Dev <dev@localhost>")


def test_local_flux_applies_what_the_hub_commits_as_flux_would(tmp_path: Path, k8s: Cluster):
    bare = flux.seed_zone_repo(tmp_path)
    gitrepo.init_bare_seeded(tmp_path / "mesh.git", ROOT / "clusters" / "mesh")
    flux.create_example(k8s, "eks")  # clusters/flux/zone-eks.yaml, as a cluster admin bootstraps it
    lf = LocalFlux(k8s.server, gitrepo.Repo(str(bare), "main", tmp_path / "flux-clone"), "eks")
    fleet = fleets.fleet([fleets.kube_zone("eks", str(bare), k8s.member_kc.path)],
                         fleets.envoy_mesh(str(tmp_path / "mesh.git"), edge={
                             "rdsPath": str(tmp_path / "edge" / "rds.json"),
                             "admin": {"address": "127.0.0.1", "port": free_port()}}), name="k")
    canary = specs.FederatedCanary.model_validate(CANARY)

    async def scenario() -> None:
        ad = hub_parts.build(fleet, tmp_path / "hub")
        try:
            await ad.sync()
            assert lf.reconcile() and not lf.reconcile()  # the seed; then nothing new
            st = ks_status(k8s)
            assert st["status"]["lastAppliedRevision"] == f"main@sha1:{flux.head(bare)}"
            assert conditions(st)["Ready"] == ("True", "ReconciliationSucceeded")
            assert st["status"]["inventory"]["entries"] == []

            weights = tuple(sorted(subsets_for(canary.spec, 0, fleet).items()))
            result = await ad.executor.apply_step(canary, SetWeights(1, "initialise", 0, 0, False, weights))
            assert (await ad.zones["eks"].observe(canary, 1)).applied_step() == 0
            assert lf.reconcile()
            st = ks_status(k8s)
            assert st["status"]["lastAppliedRevision"] == f"main@sha1:{result.commits['eks']}"
            assert st["status"]["lastHandledReconcileAt"] == st["metadata"]["annotations"][kube.RECONCILE]
            ids = {e["id"] for e in st["status"]["inventory"]["entries"]}
            assert {"shop_frontend-v1_apps_Deployment", "shop_frontend-v2__Service",
                    "shop_frontend-eks_gateway.networking.k8s.io_HTTPRoute"} <= ids
            g, v, p = kube.FLUX_GIT
            src = k8s.admin.custom.get_namespaced_custom_object(g, v, "flux-system", p, "eks")
            assert src["status"]["artifact"]["revision"] == f"main@sha1:{result.commits['eks']}"
            assert (await ad.zones["eks"].observe(canary, 1)).applied_step() == 1
            # The hub asks again (requestedAt), nothing new in Git: applied again, handled.
            await ad.zones["eks"].converge(1)
            assert lf.reconcile() and not lf.reconcile()

            # A build failure: Stalled, the last applied revision kept, the reason in the hub's view.
            human_push(tmp_path, bare, "deploy/kustomization.yaml",
                       "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
                       "resources: [frontend, missing.yaml]\n")
            assert not lf.reconcile()
            st = ks_status(k8s)
            assert conditions(st)["Stalled"] == ("True", "BuildFailed")
            assert st["status"]["lastAppliedRevision"] == f"main@sha1:{result.commits['eks']}"
            assert st["status"]["lastAttemptedRevision"] == f"main@sha1:{flux.head(bare)}"
            zs = await ad.zones["eks"].observe(canary, 1)
            assert zs.applied_step() is None and "Flux: BuildFailed: kustomize build failed" in zs.reasons()[0]

            # An object the zone's ServiceAccount may not apply: the API server's 403, not Ready.
            human_push(tmp_path, bare, "deploy/kustomization.yaml",
                       "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
                       "resources: [frontend, settings.yaml]\n")
            human_push(tmp_path, bare, "deploy/settings.yaml",
                       "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: shop}\n")
            assert not lf.reconcile()
            st = ks_status(k8s)
            assert conditions(st)["Ready"][0] == "False" and "(403)" in st["status"]["conditions"][0]["message"]

            # Fixed: the ConfigMap goes; applied again, and what the hub retired is pruned.
            human_push(tmp_path, bare, "deploy/kustomization.yaml",
                       "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [frontend]\n")
            assert lf.reconcile()
            assert conditions(ks_status(k8s))["Ready"] == ("True", "ReconciliationSucceeded")
            rec = StepRecord("shop/frontend", 2, Stage.ROLLBACK, 0, weights, retire=(Subset("eks", "v2"),))
            assert await ad.zones["eks"].commit(canary, rec, rec.message("frontend", "v2"))
            assert lf.reconcile()
            assert [d.metadata.name for d in k8s.admin.apps.list_namespaced_deployment("shop").items] == ["frontend-v1"]
        finally:
            await ad.close()

    asyncio.run(scenario())
