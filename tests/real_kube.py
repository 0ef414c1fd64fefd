"""A real kube-apiserver for the Kubernetes-facing tests (issue 21).

One API server per test session (``federation.demo.kubeapi``, binaries from ``scripts/build-kube``,
built once per machine into ~/.cache/federation/kube/<version>/). The hub's RBAC from
``clusters/hub/`` is applied, and the hub talks to it with its ServiceAccounts' tokens:

- ``hub``: federation-system/federation-hub, the hub's own cluster (hub/base: Leases, ConfigMaps,
  Events);
- ``member``: flux-system/federation-hub, a member cluster and the mesh's control plane
  (hub/member, hub/mesh: Deployments, Flux objects, mesh routes);
- flux-system/federation-zone-applier (zone-flux.yaml): what Flux applies a zone repo as
  (``demo.fluxlocal`` impersonates it, as kustomize-controller does);
- ``admin``: system:masters, for what a controller (Flux, the Deployment controller) or a human
  does in a test: creating workloads, writing the status subresource.

A verb the RBAC does not grant answers 403, as on a real cluster.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from federation.core.spec import Kubeconfig
from federation.demo import kubeapi
from federation.demo.procs import Supervisor
from federation.runtimes import kubernetes as kube

ROOT = Path(__file__).resolve().parents[1]
HUB_NS = "federation-system"  # the hub's own namespace (clusters/hub/base)
FLUX_NS = "flux-system"
NAMESPACES = (HUB_NS, FLUX_NS, "kuma-system", "shop")
# The accounts and RBAC of the deployment manifests, as files (the Kustomize bases render these
# unchanged but for labels; tests/integration/test_hub_manifests.py checks the rendered ones).
RBAC = ("base/serviceaccount.yaml", "base/rbac.yaml", "member/member-cluster.yaml", "mesh/mesh-cluster.yaml",
        "zone-flux.yaml")

# What tests leave behind, removed before each test (no controllers run, so nothing else appears).
LEFTOVERS = (("v1", "ConfigMap", HUB_NS), ("coordination.k8s.io/v1", "Lease", HUB_NS), ("v1", "Event", "shop"),
             ("v1", "Event", HUB_NS), ("apps/v1", "Deployment", "shop"),
             ("gateway.networking.k8s.io/v1", "HTTPRoute", "shop"), ("split.smi-spec.io/v1alpha2", "TrafficSplit", "shop"),
             ("kustomize.toolkit.fluxcd.io/v1", "Kustomization", FLUX_NS),
             ("source.toolkit.fluxcd.io/v1", "GitRepository", FLUX_NS),
             ("kuma.io/v1alpha1", "MeshHTTPRoute", "kuma-system"))


def binaries() -> Path:
    """The bin directory with kube-apiserver and etcd; built on first use (minutes, once per machine)."""
    out = subprocess.run([str(ROOT / "scripts" / "build-kube")], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"scripts/build-kube failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


@dataclass
class Cluster:
    server: kubeapi.LocalKube
    admin_kc: Kubeconfig
    hub_kc: Kubeconfig
    member_kc: Kubeconfig
    _apis: dict[str, kube.Api] = field(default_factory=dict)

    def api(self, kc: Kubeconfig) -> kube.Api:
        """One client per kubeconfig for the session (closed by ``close``)."""
        if kc.context not in self._apis:
            self._apis[str(kc.context)] = kube.Api(kube.api_client(kc))
        return self._apis[str(kc.context)]

    def close(self) -> None:
        try:
            for api in self._apis.values():
                api.close()
            self._apis.clear()
        finally:
            self.server.stop()

    @property
    def admin(self) -> kube.Api:
        return self.api(self.admin_kc)

    @property
    def hub(self) -> kube.Api:
        return self.api(self.hub_kc)

    @property
    def member(self) -> kube.Api:
        return self.api(self.member_kc)

    def reset(self) -> None:
        for api_version, kind, ns in LEFTOVERS:
            self.server.delete_all(api_version, kind, ns)
        # Services have no delete-collection: one by one.
        r = self.server.request("GET", "/api/v1/namespaces/shop/services")
        for item in r.json().get("items", []) if r.status_code == 200 else []:
            self.server.request("DELETE", f"/api/v1/namespaces/shop/services/{item['metadata']['name']}")


def start(work: Path, supervisor: Supervisor) -> Cluster:
    server = kubeapi.start(binaries(), work, supervisor)
    try:
        for ns in NAMESPACES:
            server.ensure_namespace(ns)
        for f in RBAC:
            server.apply_file(ROOT / "clusters" / "hub" / f)
        admin = Kubeconfig(path=str(server.admin_kubeconfig), context="local-admin")
        hub = Kubeconfig(path=str(server.token_kubeconfig(HUB_NS, "federation-hub", work / "hub.kubeconfig", "hub")),
                         context="hub")
        member = Kubeconfig(path=str(server.token_kubeconfig(FLUX_NS, "federation-hub", work / "member.kubeconfig",
                                                             "member")), context="member")
        return Cluster(server, admin, hub, member)
    except BaseException:
        server.stop()
        raise


# ----------------------------------------------------------------------------- objects as controllers write them


def condition(type_: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    """A metav1.Condition (every field the schema requires)."""
    return {"type": type_, "status": status, "reason": reason, "message": message or reason,
            "lastTransitionTime": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


def deployment(api: kube.Api, namespace: str, name: str, replicas: int, labels: dict[str, str]) -> None:
    api.apps.create_namespaced_deployment(namespace, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "app", "image": "registry.local/app:1"}]}}}})


def deployment_status(api: kube.Api, namespace: str, name: str, available: int, updated: int,
                      conditions: list[dict[str, Any]] | None = None, observed: int = 1) -> None:
    """Status as the Deployment controller writes it (the subresource; no controller runs here)."""
    d = api.apps.read_namespaced_deployment(name, namespace)
    api.apps.patch_namespaced_deployment_status(name, namespace, {"status": {
        "observedGeneration": observed, "replicas": d.spec.replicas, "updatedReplicas": updated,
        "readyReplicas": available, "availableReplicas": available,
        "unavailableReplicas": max(0, d.spec.replicas - available), "conditions": conditions or []}})
