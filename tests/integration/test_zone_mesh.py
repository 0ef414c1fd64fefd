"""The Kubernetes zone's mesh stand-in (``demo.zonemesh``) on a real ingress Envoy: a version that
leaves the zone's split and its endpoints in the same pass (a rollback's commit: weight 0 and the
Deployment deleted, applied by Flux at once) is routed away from before its cluster goes, so no
request meets a route naming a cluster Envoy no longer has (an empty 503) — and the pods, serving
through their preStop sleep, answer what the old route still sends them."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from federation.demo.fleet import LocalFleet
from federation.demo.zonemesh import ZoneMesh
from vmagent import envoy as zone_envoy

pytestmark = pytest.mark.integration


class Version(http.server.ThreadingHTTPServer):
    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), Answer)
        self.name = name
        threading.Thread(target=self.serve_forever, daemon=True).start()


class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = self.server.name.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class Pods:
    """The kubelet's side the mesh reads: each version's ready pods (a deleted one is out at once)."""

    def __init__(self) -> None:
        self.ready: dict[str, list[int]] = {}

    def endpoints(self, selector: dict[str, str]) -> list[int]:
        return self.ready.get(selector["version"], [])


class Mesh(ZoneMesh):
    """The mesh with the applied HTTPRoute given by the test instead of read from an API server."""

    applied: list[tuple[str, int]] = []

    def split(self, service: str) -> list[tuple[str, int]]:
        return list(self.applied)


@pytest.fixture
def ingress(tmp_path: Path) -> Iterator[LocalFleet]:
    fleet = LocalFleet(tmp_path / "fleet", services=("frontend",))
    fleet.prepare()
    try:
        fleet.start_ingress("eks")
        yield fleet
    finally:
        fleet.stop()


def test_a_version_leaving_split_and_endpoints_at_once_is_routed_away_from_before_its_cluster_goes(
        ingress: LocalFleet, monkeypatch: pytest.MonkeyPatch) -> None:
    v1, v2 = Version("v1"), Version("v2")
    pods = Pods()
    pods.ready = {"v1": [v1.server_address[1]], "v2": [v2.server_address[1]]}
    z = next(x for x in ingress.zones if x.name == "eks")
    mesh = Mesh(None, pods, "shop", "eks", ingress.zdir("eks") / "envoy", f"127.0.0.1:{z.admin_port}")  # type: ignore[arg-type]
    mesh.applied = [("v1", 5000), ("v2", 5000)]
    mesh.sync("frontend")

    # Every write the mesh makes, checked against what Envoy holds at that moment.
    cds = Path(zone_envoy.clusters_path(str(ingress.zdir("eks") / "envoy")))
    clusters: set[str] = {r["name"] for r in json.loads(cds.read_text())["resources"]}
    routes: set[str] = {zone_envoy.cluster_name("frontend", v) for v, _ in mesh.last["frontend"][1]}
    broken: list[str] = []
    write = zone_envoy.write

    def recorded(path: str, document: dict[str, Any]) -> None:
        nonlocal clusters, routes
        resources: list[dict[str, Any]] = document["resources"]  # type: ignore[assignment]
        if path.endswith("cds.json"):
            clusters = {r["name"] for r in resources}
            if not routes <= clusters:
                broken.append(f"clusters {sorted(clusters)} while the route names {sorted(routes)}")
        else:
            wc = resources[0]["virtual_hosts"][0]["routes"][0].get("route", {}).get("weighted_clusters", {})
            routes = {c["name"] for c in wc.get("clusters", [])}
            if not routes <= clusters:
                broken.append(f"route names {sorted(routes)} while the clusters are {sorted(clusters)}")
        write(path, document)

    monkeypatch.setattr(zone_envoy, "write", recorded)
    # The rollback's commit applied: v2 out of the split and, deleted, out of the endpoints.
    mesh.applied = [("v1", 10000)]
    pods.ready = {"v1": [v1.server_address[1]]}
    mesh.sync("frontend")

    assert broken == []
    assert routes == {"frontend-v1"} and clusters == {"frontend-v1"}  # v2's cluster gone once unrouted
    with httpx.Client() as c:
        assert {c.get(ingress.service_url("eks", "frontend")).text for _ in range(10)} == {"v1"}
    for v in (v1, v2):
        v.shutdown()
        v.server_close()
