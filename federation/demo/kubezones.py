"""The demo's Kubernetes zones (``eks``, ``onprem``) on this machine: one real kube-apiserver
(``demo.kubeapi``), each zone in its own namespace (``shop-<zone>``) with its own Flux objects
(``clusters/flux/zone-<zone>.yaml``), and local stand-ins for what a cluster runs besides the API:
Flux (``demo.fluxlocal``), the kubelet and Deployment controller (``demo.kubelet``) and the zone's
mesh (``demo.zonemesh``, programming the zone's ingress Envoy). The hub reaches the API only with
the official client, through a kubeconfig holding its ServiceAccount's token
(``clusters/hub/member/member-cluster.yaml``), as it would reach EKS.

``binaries`` finds kube-apiserver and etcd where ``scripts/build-kube`` puts them (it never builds:
None when they are absent, and the demo runs every zone as a VM zone).
Callers: ``demo.run``.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from federation.demo import kubeapi, steptimes
from federation.demo.fluxlocal import LocalFlux
from federation.demo.kubelet import LocalKubelet
from federation.demo.procs import Supervisor
from federation.demo.zonemesh import ZoneMesh
from federation.gitops import repo as gitrepo

log = logging.getLogger("federation.demo")

FLUX_NS = "flux-system"
RBAC = ("member/member-cluster.yaml", "zone-flux.yaml")
SERVICE = "frontend"
# The stand-ins' image registry: the environment each of the demo's images bakes in (fed-demo-app
# stands in for every image; a container's env goes over this, as in a container runtime). The
# faulty v3 build is the image 3.0.0; its fix, 3.0.1, bakes in nothing.
IMAGES = {"registry.example.com/shop/frontend:3.0.0": {"FAULT_RATE": "0.3", "EXTRA_LATENCY_MS": "150"}}


def _root() -> Path:
    return Path(__file__).resolve().parents[2]


def binaries() -> Path | None:
    """The bin directory holding kube-apiserver and etcd (``scripts/build-kube``'s output), or None."""
    cache = Path(os.environ.get("FEDERATION_KUBE_CACHE", str(Path.home() / ".cache" / "federation" / "kube")))
    version = ""
    gomod = _root() / "tests" / "kube" / "go.mod"
    if gomod.exists():
        for line in gomod.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "k8s.io/kubernetes":
                version = parts[1]
    candidates = [cache / version / "bin"] if version else sorted(cache.glob("*/bin"), reverse=True)
    for d in candidates:
        if os.access(d / "kube-apiserver", os.X_OK) and os.access(d / "etcd", os.X_OK):
            return d
    return None


def namespace(zone: str) -> str:
    """Where a zone's Deployments run: both zones share one API server, so each has its own."""
    return f"shop-{zone}"


@dataclass
class KubeZone:
    name: str
    flux: LocalFlux
    kubelet: LocalKubelet
    mesh: ZoneMesh


@dataclass
class KubeZones:
    kube: kubeapi.LocalKube
    kubeconfig: Path  # the hub's: context "member", the ServiceAccount flux-system/federation-hub
    zones: dict[str, KubeZone] = field(default_factory=dict)
    errors: int = 0
    clock: steptimes.StepClock | None = None  # times each step commit to applied, ready, live
    services: tuple[str, ...] = (SERVICE,)  # what each zone's mesh routes

    def sync(self) -> None:
        """One pass of every zone's controllers: Flux applies new commits (or a requested
        reconcile), the kubelet runs what was applied, the mesh routes to the ready pods."""
        for z in self.zones.values():
            try:
                z.flux.reconcile()
                z.kubelet.sync()
                z.mesh.sync(*self.services)
                if self.clock is not None:
                    self.clock.track(z.name, z.kubelet.namespace, z.flux.repo.contains, z.mesh.routed)
            except Exception as exc:  # a controller retries at its next pass, as a real one does
                self.errors += 1
                log.warning("zone %s: %s", z.name, exc)

    def stop(self) -> None:
        for z in self.zones.values():
            z.kubelet.stop()
        self.kube.stop()


def start(bin_dir: Path, work: Path, sup: Supervisor, zones: dict[str, tuple[str, Path, str]],
          services: tuple[str, ...] = (SERVICE,)) -> KubeZones:
    """The API server under ``work`` and, for each zone name -> (repo url, ingress Envoy dir,
    ingress admin host:port), its namespace, RBAC, Flux objects and stand-ins routing ``services``."""
    kube = kubeapi.start(bin_dir, work, sup)
    try:
        for ns in (FLUX_NS, "shop"):  # shop: the canaries' namespace, which zone-flux.yaml binds
            kube.ensure_namespace(ns)
        for f in RBAC:
            kube.apply_file(_root() / "clusters" / "hub" / f)
        binding = next(d for d in yaml.safe_load_all((_root() / "clusters" / "hub" / "zone-flux.yaml").read_text())
                       if d and d.get("kind") == "RoleBinding")
        app = str(Path(sys.executable).parent / "fed-demo-app")
        out = KubeZones(kube, kube.token_kubeconfig(FLUX_NS, "federation-hub", work / "hub.kubeconfig", "member"),
                        clock=steptimes.StepClock(kube), services=services)
        for name, (url, envoy_dir, admin) in zones.items():
            ns = namespace(name)
            kube.ensure_namespace(ns)
            kube.apply([{**binding, "metadata": {**binding["metadata"], "namespace": ns}}])
            kube.apply([d for d in yaml.safe_load_all((_root() / "clusters" / "flux" / f"zone-{name}.yaml").read_text())
                        if d])
            flux = LocalFlux(kube, gitrepo.Repo(url, "main", work / f"flux-{name}"), name)
            kubelet = LocalKubelet(kube, ns, name, Supervisor(work / f"pods-{name}"), app, images=IMAGES)
            out.zones[name] = KubeZone(name, flux, kubelet, ZoneMesh(kube, kubelet, ns, name, envoy_dir, admin))
        return out
    except BaseException:
        kube.stop()
        raise


def fleet_zone(doc: dict[str, Any], kubeconfig: Path) -> dict[str, Any]:
    """A VM zone of the demo fleet made a Kubernetes zone on the local API server."""
    z = {k: v for k, v in doc.items() if k not in ("hosts", "knownHosts", "identityFile", "labels")}
    z.update(kind="kubernetes", kubeconfig={"path": str(kubeconfig), "context": "member"},
             flux={"workloadNamespace": namespace(doc["name"])})
    z["description"] = f"{doc['name']}: Kubernetes zone on a local kube-apiserver with local stand-ins " \
                       "for Flux, the kubelet and the zone's mesh"
    return z
