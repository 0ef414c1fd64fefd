"""The hub's executor and observer on a Kubernetes zone: commit, ask Flux to reconcile, map Flux's
applied revision back to our step, read Deployment readiness — through the official client, against
a real kube-apiserver with the hub's ServiceAccount token (clusters/hub/member/member-cluster.yaml). Flux's
and the Deployment controller's status are written by the test, as those controllers would."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from federation.core import spec as specs
from federation.core.state import SetWeights
from federation.core.weights import subsets_for
from federation.gitops import repo as gitrepo
from federation.hub import parts as hub_parts
from federation.runtimes import kubernetes as kube
from tests import fleets
from tests.integration import flux
from tests.integration.conftest import free_port
from tests.real_kube import Cluster, condition, deployment, deployment_status

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_kubernetes_zone_step_converges_through_flux(tmp_path: Path, k8s: Cluster):
    kc = k8s.member_kc.path
    api = k8s.admin  # Flux and the Deployment controller; the hub uses its own token (kc)
    flux.seed_zone_repo(tmp_path)
    gitrepo.init_bare_seeded(tmp_path / "mesh.git", ROOT / "clusters" / "mesh")
    flux.create(api, "eks")
    g, v, p = kube.FLUX_KS
    for version, available in (("v1", 2), ("v2", 1)):
        deployment(api, "shop", f"frontend-{version}", 2, {"app": "frontend", "version": version})
        deployment_status(api, "shop", f"frontend-{version}", available, 2)

    def flux_applies_head() -> str:
        head = subprocess.run(["git", "--git-dir", str(tmp_path / "eks.git"), "rev-parse", "main"],
                              capture_output=True, text=True, check=True).stdout.strip()
        flux.applied(api, "eks", head)
        return head

    fleet = fleets.fleet([fleets.kube_zone("eks", str(tmp_path / "eks.git"), kc)],
                         fleets.envoy_mesh(str(tmp_path / "mesh.git"), edge={
                             "rdsPath": str(tmp_path / "edge" / "rds.json"),
                             "admin": {"address": "127.0.0.1", "port": free_port()}}), name="k")
    canary = specs.FederatedCanary.model_validate({
        "apiVersion": specs.API_VERSION, "kind": "FederatedCanary", "metadata": {"name": "frontend", "namespace": "shop"},
        "spec": {"service": {"name": "frontend"}, "primary": {"version": "v1", "zones": ["eks"]},
                 "canary": {"version": "v2", "zones": ["eks"]},
                 "analysis": {"stepWeight": 20, "canaryReadyThreshold": 50, "metrics": []}}})

    async def scenario() -> None:
        ad = hub_parts.build(fleet, tmp_path / "hub")
        try:
            await ad.sync()
            flux_applies_head()
            weights = tuple(sorted(subsets_for(canary.spec, 2000, fleet).items()))
            action = SetWeights(3, "analysis", 2000, 0, False, weights, reason="test")
            result = await ad.executor.apply_step(canary, action)
            assert set(result.commits) == {"eks", "mesh"}
            ks = api.custom.get_namespaced_custom_object(g, v, "flux-system", p, "eks")
            assert kube.RECONCILE in ks["metadata"]["annotations"]  # Flux was asked to reconcile now
            st = await ad.zones["eks"].observe(canary, 3)
            assert st.applied_step() == 0  # Flux has not applied our commit yet: behind
            head = flux_applies_head()
            assert head == result.commits["eks"]
            st = await ad.zones["eks"].observe(canary, 3)
            assert st.applied_step() == 3
            assert st.ready_percent("frontend", "v1") == 100.0 and st.ready_percent("frontend", "v2") == 50.0
            text = subprocess.run(["git", "--git-dir", str(tmp_path / "eks.git"), "show", "main:frontend.yaml"],
                                  capture_output=True, text=True, check=True).stdout
            assert "v1: 8000" in text and "v2: 2000" in text
            assert st.failed("frontend", "v2") == ""
            # The canary Deployment gives up (its own progressDeadlineSeconds): reported as a
            # failure of the canary, which the core rolls back at once.
            deployment_status(api, "shop", "frontend-v2", 1, 2, [
                condition("Progressing", "False", "ProgressDeadlineExceeded")])
            st = await ad.zones["eks"].observe(canary, 3)
            assert "ProgressDeadlineExceeded" in st.failed("frontend", "v2")
            assert st.failed("frontend", "v1") == ""
        finally:
            await ad.close()

    asyncio.run(scenario())
