"""The envoy router against real Envoy: config validation, and weights changed under load."""

from __future__ import annotations

import asyncio
import json
import math
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from federation.core.spec import Edge, Endpoint
from federation.core.weights import Subset
from federation.demo.procs import wait_for
from federation.routers import envoy as envoy_router
from federation.routers.model import RouteRequest
from federation.runtimes.edge import EnvoyEdge, write_by_rename
from tests.integration.conftest import bootstrap, envoy_bin, free_port, start_app, start_envoy, static_cluster
from tests.unit.test_routers import MODES, ZONE_SETS, make_spec, request

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("nzones", [1, 5])
def test_envoy_accepts_rendered_routes_in_a_static_bootstrap(tmp_path: Path, mode: str, nzones: int):
    # A dynamic bootstrap alone validates nothing: inline the route so --mode validate checks it.
    spec = make_spec(ZONE_SETS[nzones], mode)
    req = request(spec, 10_000 if mode == "bluegreen" else 2000, mode)
    doc = envoy_router.render(req)[0]
    route = dict(doc["resources"][0])
    route.pop("@type")
    clusters = [static_cluster(envoy_router.cluster(z), 1) for z in req.zones]
    boot = bootstrap(free_port(), free_port(), clusters, {"route_config": route})
    path = tmp_path / "boot.json"
    path.write_text(json.dumps(boot))
    r = subprocess.run([envoy_bin(), "--mode", "validate", "-c", str(path), "--log-level", "error"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_envoy_validate_catches_a_broken_route(tmp_path: Path):
    boot = bootstrap(free_port(), free_port(), [static_cluster("zone-a", 1)], {"route_config": {
        "name": "x", "validate_clusters": True, "virtual_hosts": [{"name": "x", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "route": {"weighted_clusters": {"clusters": [{"name": "zone-missing", "weight": 1}]}}}]}]}})
    path = tmp_path / "boot.json"
    path.write_text(json.dumps(boot))
    r = subprocess.run([envoy_bin(), "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0


def route_request(weights: dict[str, int], step: int) -> RouteRequest:
    return RouteRequest(service="frontend", namespace="shop", port=8080, primary_version="v1", canary_version="v2",
                        weights=tuple((Subset(z, "v1" if z == "a" else "v2"), w) for z, w in weights.items()),
                        step=step, rollout="t/frontend", zones=tuple(weights))


def cluster_totals(admin: int) -> dict[str, int]:
    text = httpx.get(f"http://127.0.0.1:{admin}/stats", params={"filter": r"^cluster\.zone-.*\.upstream_rq_total$"}).text
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        out[name.split(".")[1]] = int(value)
    return out


def test_weights_flipped_100_times_under_load_lose_nothing_and_split_holds(tmp_path: Path, procs):
    hey = shutil.which("hey")
    assert hey, "hey is installed by make install"
    ports = {z: start_app(procs, f"app-{z}", "v1" if z == "a" else "v2", z) for z in ("a", "b")}
    admin, listener = free_port(), free_port()
    rds = tmp_path / "rds.json"
    write_by_rename(rds, json.dumps(envoy_router.render(route_request({"a": 10_000, "b": 0}, 0))[0]))
    boot = bootstrap(admin, listener, [static_cluster(f"zone-{z}", p) for z, p in ports.items()], {
        "rds": {"route_config_name": "frontend", "config_source": {
            "resource_api_version": "V3", "path_config_source": {"path": str(rds)}}}})
    start_envoy(procs, tmp_path, "edge", boot)
    edge = EnvoyEdge(Edge(rds_path=str(rds), admin=Endpoint(address="127.0.0.1", port=admin)))

    async def flip(n: int) -> int:
        applied = 0
        for step in range(1, n + 1):
            w = 1000 + (step * 7919) % 8000
            await edge.apply(envoy_router.render(route_request({"a": 10_000 - w, "b": w}, step))[0])
            deadline = time.monotonic() + 5
            while envoy_router.step_of(await edge.version_text("frontend"), "t/frontend") != step:
                assert time.monotonic() < deadline, f"step {step} not applied"
                await asyncio.sleep(0.01)
            applied += 1
        return applied

    # The load runs until the flips are done (then hey is interrupted and prints its report): a
    # fixed duration would end first on a loaded machine.
    load = subprocess.Popen([hey, "-z", "600s", "-c", "8", "-q", "40", f"http://127.0.0.1:{listener}/"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        # Flip only once the load is flowing through the edge.
        wait_for(lambda: sum(cluster_totals(admin).values()) > 50, 10, "load through the edge")
        assert asyncio.run(flip(120)) == 120
        assert load.poll() is None, "the load ended before the weight changes did"
        load.send_signal(signal.SIGINT)
        out, _ = load.communicate(timeout=60)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    codes = {m[0]: int(m[1]) for m in re.findall(r"\[(\d{3})\]\s+(\d+) responses", out)}
    assert codes and set(codes) == {"200"}, out
    assert "Error distribution" not in out, out
    # Now a fixed 30/70 split over 5,000 requests, counted by Envoy's own upstream counters.
    asyncio.run(edge.apply(envoy_router.render(route_request({"a": 3000, "b": 7000}, 999))[0]))
    deadline = time.monotonic() + 5
    while envoy_router.step_of(asyncio.run(edge.version_text("frontend")), "t/frontend") != 999:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    before = cluster_totals(admin)
    r = subprocess.run([hey, "-n", "5000", "-c", "10", f"http://127.0.0.1:{listener}/"], capture_output=True,
                       text=True, timeout=120)
    assert re.findall(r"\[(\d{3})\]\s+(\d+) responses", r.stdout) == [("200", "5000")], r.stdout
    after = cluster_totals(admin)
    got_b = after["zone-b"] - before.get("zone-b", 0)
    got_a = after["zone-a"] - before.get("zone-a", 0)
    n = got_a + got_b
    assert n == 5000
    sigma = math.sqrt(n * 0.7 * 0.3)
    print(f"split at 30/70 over {n} requests: a={got_a} b={got_b} (expected b={0.7 * n:.0f} +- {3 * sigma:.0f})")
    assert abs(got_b - 0.7 * n) <= 3 * sigma, (got_a, got_b)
