"""The VM-local Envoy: clusters (CDS) and the weighted route (RDS) as files Envoy watches.

Envoy only notices a file-based xDS change on a move into the watched path, so every write is a
rename of a complete file; ``validate_clusters`` makes Envoy reject a route naming an unknown
cluster instead of serving 503s. The admin endpoint tells which version Envoy actually applied.
Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.parse
import urllib.request

from vmagent import state

CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"


def cluster_name(service: str, version: str) -> str:
    return f"{service}-{version}"


def render_clusters(endpoints: dict[str, list[int]], version_info: str) -> dict[str, object]:
    """One STATIC cluster per (service-version) name with its healthy local ports."""
    resources = []
    for name in sorted(endpoints):
        resources.append({
            "@type": CLUSTER_TYPE,
            "name": name,
            "type": "STATIC",
            "connect_timeout": "1s",
            "common_lb_config": {"healthy_panic_threshold": {"value": 0}},
            "load_assignment": {
                "cluster_name": name,
                "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}
                    for p in sorted(endpoints[name])
                ]}],
            },
        })
    return {"version_info": version_info, "resources": resources}


def _route(route_name: str, weights: list[tuple[str, int]]) -> dict[str, object]:
    live = [(n, w) for n, w in weights if w > 0]
    if not live:  # no positive weight: an equal split over whatever runs here
        live = [(n, 1) for n, _ in weights]
    route: dict[str, object] = {"match": {"prefix": "/"}}
    if live:
        route["route"] = {
            "weighted_clusters": {"clusters": [{"name": n, "weight": w} for n, w in live]},
            "timeout": "15s",
            "retry_policy": {"retry_on": "connect-failure,refused-stream,reset", "num_retries": 2},
        }
    else:
        route["direct_response"] = {"status": 503, "body": {"inline_string": "no version serves here\n"}}
    return {
        "@type": ROUTE_TYPE,
        "name": route_name,
        "validate_clusters": True,
        "virtual_hosts": [{"name": route_name, "domains": ["*"], "routes": [route]}],
    }


def render_route(service: str, weights: list[tuple[str, int]], version_info: str) -> dict[str, object]:
    """The RDS document of one service: the zone's split between its local versions.

    One document (one file) per service: Envoy rejects a path-based RDS file holding more than one
    RouteConfiguration ("Unexpected RDS resource length"), so a shared file would route nothing as
    soon as a zone serves two services."""
    return {"version_info": version_info, "resources": [_route(service, weights)]}


def digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]


def write(path: str, document: dict[str, object]) -> None:
    # JSON is valid YAML; Envoy reads .yaml and .json path configs alike by extension.
    state.write_atomic(path, json.dumps(document, indent=1).encode(), mode=0o644)


class Admin:
    """Questions to the local Envoy's admin port, and its health-check switch (drain)."""

    def __init__(self, address: str, timeout: float = 2.0) -> None:
        self.base = f"http://{address}"
        self.timeout = timeout

    def stats(self, filter_regex: str) -> dict[str, str]:
        url = f"{self.base}/stats?filter={urllib.parse.quote(filter_regex)}"
        out: dict[str, str] = {}
        with urllib.request.urlopen(url, timeout=self.timeout) as resp:
            for line in resp.read().decode().splitlines():
                name, _, value = line.partition(": ")
                out[name.strip()] = value.strip().strip('"')
        return out

    def route_version(self, stat_prefix: str, route_name: str) -> str | None:
        key = f"http.{stat_prefix}.rds.{route_name}.version_text"
        try:
            return self.stats(f"^{key}$").get(key)
        except OSError:
            return None

    def clusters_version(self) -> str | None:
        try:
            return self.stats("^cluster_manager.cds.version_text$").get("cluster_manager.cds.version_text")
        except OSError:
            return None

    def set_health(self, ok: bool) -> bool:
        """``/healthcheck/fail`` (Envoy reports DRAINING: ``/ready`` and the listener's health-check
        path answer 503, so load balancers that check it stop sending new requests; requests that
        arrive are still served) or ``/healthcheck/ok``. True when Envoy took it."""
        req = urllib.request.Request(f"{self.base}/healthcheck/{'ok' if ok else 'fail'}", method="POST", data=b"")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def server_state(self) -> str | None:
        """LIVE, DRAINING, ... from ``/ready`` (503 while draining)."""
        try:
            with urllib.request.urlopen(f"{self.base}/ready", timeout=self.timeout) as resp:
                return str(resp.read().decode().strip())
        except urllib.error.HTTPError as exc:
            return str(exc.read().decode().strip())
        except OSError:
            return None

    def total_active_requests(self, clusters: list[str]) -> int:
        return sum(self.active_requests(c) for c in clusters)

    def active_requests(self, cluster: str) -> int:
        key = f"cluster.{cluster}.upstream_rq_active"
        try:
            return int(self.stats(f"^{key}$").get(key, "0"))
        except (OSError, ValueError):
            return 0


def clusters_path(config_dir: str) -> str:
    return os.path.join(config_dir, "cds.json")


def route_path(config_dir: str, service: str) -> str:
    """Where the listener of ``service`` watches its route: ``rds-<service>.json``."""
    return os.path.join(config_dir, f"rds-{service}.json")
