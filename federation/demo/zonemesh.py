"""A local stand-in for a Kubernetes zone's mesh: it programs the zone's ingress Envoy from what
Flux applied there, so traffic inside the zone follows Git. Plainly not Linkerd or Kuma.

``sync`` reads the zone's split for each service it is given — the HTTPRoute ``<service>-<zone>``
the hub rendered (its backendRefs' weights over the versions' Services) — and the ready pods behind
each version's Service (``demo.kubelet``); it writes the Envoy's clusters (one per version with
ready pods, every service's in the one ``cds.json``) and, once Envoy has applied those, each
service's route (the weights; a version without ready pods left out; all weights 0: an even split).
A cluster the live routes still send to stays, with the endpoints it had, until Envoy has applied
the routes without it (as a mesh's proxies keep their last endpoints until their routes move on, and
as the VM agents drop a retired version: route first, clusters after): a request never meets a
route naming a cluster Envoy no longer has (503) nor the pods a deletion took out of the endpoints
while they still serve their preStop sleep.
The same files and rules as the VM agents' Envoy (``vmagent.envoy``).
Callers: tests, the demo, the chaos soak (five services in one zone).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from federation.core.errors import FederationError
from federation.demo.kubeapi import LocalKube
from federation.demo.kubelet import LocalKubelet
from federation.demo.procs import wait_for
from vmagent import envoy as zone_envoy

HTTPROUTE = "gateway.networking.k8s.io/v1"
log = logging.getLogger("federation.demo.zonemesh")


def _not_found(body: str) -> bool:
    """Whether a 404's body is the API's Status for a missing object (not a kind it does not serve)."""
    try:
        status = json.loads(body)
    except ValueError:
        return False
    return isinstance(status, dict) and status.get("kind") == "Status" and status.get("reason") == "NotFound"


@dataclass
class ZoneMesh:
    kube: LocalKube
    kubelet: LocalKubelet
    namespace: str
    zone: str
    envoy_dir: Path  # where the zone's ingress Envoy watches cds.json and rds-<service>.json
    admin: str  # its admin address, host:port
    # What the last ``sync`` found applied and what it routes, per service: live when they match.
    last: dict[str, tuple[list[tuple[str, int]], list[tuple[str, int]]]] = field(default_factory=dict)
    clusters: dict[str, list[int]] = field(default_factory=dict)  # what the last write gave Envoy

    def routed(self) -> bool:
        """Whether the last ``sync`` routes every version of each applied split to ready pods."""
        return all(split == live for split, live in self.last.values())

    def split(self, service: str) -> list[tuple[str, int]]:
        """(version, weight) of the zone's HTTPRoute for ``service`` (empty: none applied)."""
        r = self.kube.request("GET", f"/apis/{HTTPROUTE}/namespaces/{self.namespace}/httproutes/{service}-{self.zone}")
        if r.status_code == 404 and _not_found(r.text):
            return []
        if r.status_code != 200:  # a 404 without a Status: HTTPRoute not served yet (an API server starting)
            raise FederationError(f"httproute {service}-{self.zone}: {r.status_code} {r.text[:200]}")
        rules: list[dict[str, Any]] = r.json()["spec"].get("rules") or []
        refs = rules[-1].get("backendRefs") or [] if rules else []
        prefix = f"{service}-"
        return [(ref["name"].removeprefix(prefix), int(ref.get("weight", 1))) for ref in refs
                if ref["name"].startswith(prefix)]

    def sync(self, *services: str, timeout: float = 10.0) -> list[tuple[str, int]]:
        """Program the ingress Envoy for ``services``; the (version, weight) pairs it now routes for
        the first. Clusters first (all services' in one file: a service's sync never drops
        another's), then each route once Envoy has its clusters."""
        splits = {s: self.split(s) for s in services}
        endpoints = {zone_envoy.cluster_name(s, v): self.kubelet.endpoints({"app": s, "version": v})
                     for s, split in splits.items() for v, _ in split}
        endpoints = {k: v for k, v in endpoints.items() if v}
        admin = zone_envoy.Admin(self.admin)
        routed = {zone_envoy.cluster_name(s, v) for s, (_, live) in self.last.items() for v, _ in live}
        kept = {k: v for k, v in self.clusters.items() if k in routed and k not in endpoints}
        self._clusters(admin, {**kept, **endpoints}, timeout)
        for service, split in splits.items():
            live = [(v, w) for v, w in split if zone_envoy.cluster_name(service, v) in endpoints]
            weights = [(zone_envoy.cluster_name(service, v), w) for v, w in live]
            routes_version = zone_envoy.digest({service: weights})
            if admin.route_version("ingress", service) != routes_version:
                zone_envoy.write(zone_envoy.route_path(str(self.envoy_dir), service),
                                 zone_envoy.render_route(service, weights, routes_version))
                wait_for(lambda s=service, v=routes_version: admin.route_version("ingress", s) == v, timeout,
                         f"{self.zone} ingress route {service}")
            self.last[service] = (split, live)
        if kept:  # no route sends to them any more
            self._clusters(admin, endpoints, timeout)
        return self.last[services[0]][1] if services else []

    def _clusters(self, admin: zone_envoy.Admin, endpoints: dict[str, list[int]], timeout: float) -> None:
        version = zone_envoy.digest(endpoints)
        if admin.clusters_version() != version:
            zone_envoy.write(zone_envoy.clusters_path(str(self.envoy_dir)), zone_envoy.render_clusters(endpoints, version))
            wait_for(lambda: admin.clusters_version() == version, timeout, f"{self.zone} ingress clusters")
            if endpoints != self.clusters:
                log.info("%s ingress clusters: %s", self.zone,
                         " ".join(f"{k}={','.join(map(str, v))}" for k, v in sorted(endpoints.items())) or "none")
        self.clusters = endpoints
