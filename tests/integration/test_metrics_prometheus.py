"""Metrics against real Prometheus scraping real Envoy, with known injected faults and latency."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from federation import specfiles
from federation.core import analysis as core_analysis
from federation.core import spec as specs
from federation.core.decide import decide
from federation.core.state import Observations, Phase, Readiness, RolloutStatus
from federation.demo.procs import Supervisor, wait_for
from federation.metrics import aggregate
from federation.metrics.analysis import Analyzer
from federation.metrics.prometheus import Client
from tests import fleets
from tests.integration.conftest import bootstrap, free_port, start_app, start_envoy, static_cluster, up

pytestmark = pytest.mark.integration

ZONES = {"a": ("0", "0", 2000), "b": ("0", "0", 2000), "c": ("0.05", "120", 400)}  # fault, latency ms, requests


def prometheus(procs: Supervisor, tmp: Path, name: str, targets: list[str]) -> int:
    port = free_port()
    d = tmp / name
    (d / "data").mkdir(parents=True)
    cfg = {"global": {"scrape_interval": "1s"}, "scrape_configs": [
        {"job_name": "envoy", "metrics_path": "/stats/prometheus", "static_configs": [{"targets": targets}]}]}
    (d / "prometheus.yml").write_text(specfiles.dump([cfg]))
    procs.start(name, ["prometheus", f"--config.file={d / 'prometheus.yml'}", f"--storage.tsdb.path={d / 'data'}",
                       f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"])
    wait_for(lambda: up(f"http://127.0.0.1:{port}/-/ready"), 30, name)
    return port


def envoy_total(admin: int) -> int:
    text = httpx.get(f"http://127.0.0.1:{admin}/stats", params={"filter": r"^cluster\.frontend-v2\.upstream_rq_total$"}).text
    return int(text.split(": ")[1]) if ": " in text else 0


def envoy_timed(admin: int) -> int:
    """Requests in Envoy's request-time histogram as its Prometheus endpoint shows them: histograms
    reach the stats only at Envoy's stats flush (every 5 s), counters at once."""
    text = httpx.get(f"http://127.0.0.1:{admin}/stats/prometheus",
                     params={"filter": r"^cluster\.frontend-v2\.upstream_rq_time$"}).text
    m = re.search(r'^envoy_cluster_upstream_rq_time_count\{envoy_cluster_name="frontend-v2"\} (\d+)', text, re.M)
    return int(m.group(1)) if m else -1


def prom_total(port: int, admin: int, metric: str = "envoy_cluster_upstream_rq_total") -> float:
    r = httpx.get(f"http://127.0.0.1:{port}/api/v1/query", params={
        "query": f'sum({metric}{{envoy_cluster_name="frontend-v2",instance="127.0.0.1:{admin}"}})'})
    result = r.json()["data"]["result"]
    return float(result[0]["value"][1]) if result else -1.0


def settle(envoys: dict, proms: dict, central: int, timeout: float = 60.0) -> None:
    """Poll until every Prometheus (zone and central) has scraped each Envoy's final request count
    and its request-time histogram holding every request (flushed): the zone servers and the
    central one then hold the same buckets (one scraped before a flush, one after, differed)."""
    for z, (admin, _) in envoys.items():
        want = envoy_total(admin)
        wait_for(lambda admin=admin, want=want: envoy_timed(admin) == want, timeout, f"zone {z}'s histogram flushed")
        wait_for(lambda z=z, admin=admin, want=want: all(
            prom_total(p, admin, m) == want for p in (proms[z], central)
            for m in ("envoy_cluster_upstream_rq_total", "envoy_cluster_upstream_rq_time_count")),
            timeout, f"scrape of zone {z}")


def hey(url: str, n: int, c: int = 8) -> str:
    return subprocess.run([shutil.which("hey") or "hey", "-n", str(n), "-c", str(c), url],
                          capture_output=True, text=True, timeout=120, check=True).stdout


def fleet(prom_ports: dict[str, int]) -> specs.Fleet:
    zones = [{"name": z, "kind": "vm", "git": {"url": f"/dev/null/{z}"},
              "prometheus": {"url": f"http://127.0.0.1:{p}", "timeout": "3s"},
              "ingress": {"address": "127.0.0.1", "port": 1}, "hosts": [{"address": "127.0.0.1"}],
              "knownHosts": "/dev/null"} for z, p in prom_ports.items()]
    return fleets.fleet(zones, name="m")


def canary_spec(min_success: float = 99, max_p99: float = 500, threshold: int = 1) -> specs.CanarySpec:
    return specs.FederatedCanary.model_validate({
        "apiVersion": specs.API_VERSION, "kind": "FederatedCanary", "metadata": {"name": "frontend"},
        "spec": {"service": {"name": "frontend"}, "primary": {"version": "v1", "zones": ["a"]},
                 "canary": {"version": "v2", "zones": ["a", "b", "c"]},
                 "analysis": {"interval": "10s", "threshold": threshold, "stepWeight": 10, "metrics": [
                     {"name": "request-success-rate", "thresholdRange": {"min": min_success}, "interval": "2m"},
                     {"name": "request-duration", "thresholdRange": {"max": max_p99}, "interval": "2m"}]}}}).spec


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metrics")
    procs = Supervisor(tmp / "logs")
    try:
        envoys, proms, hey_out = {}, {}, {}
        for z, (fault, latency, _) in ZONES.items():
            app = start_app(procs, f"app-{z}", "v2", z, env={"FAULT_RATE": fault, "EXTRA_LATENCY_MS": latency})
            admin, listener = free_port(), free_port()
            route = {"route_config": {"name": "r", "virtual_hosts": [{"name": "r", "domains": ["*"], "routes": [
                {"match": {"prefix": "/"}, "route": {"cluster": "frontend-v2"}}]}]}}
            start_envoy(procs, tmp, f"envoy-{z}", bootstrap(admin, listener, [static_cluster("frontend-v2", app)], route))
            envoys[z] = (admin, listener)
        for z, (admin, _) in envoys.items():
            proms[z] = prometheus(procs, tmp, f"prom-{z}", [f"127.0.0.1:{admin}"])
        central = prometheus(procs, tmp, "prom-central", [f"127.0.0.1:{a}" for a, _ in envoys.values()])
        # Warm up so every series (including the 5xx one) exists before the measured traffic.
        for _, listener in envoys.values():
            hey(f"http://127.0.0.1:{listener}/", 40, 2)
        settle(envoys, proms, central)
        for z, (_, listener) in envoys.items():
            hey_out[z] = hey(f"http://127.0.0.1:{listener}/", ZONES[z][2])
        settle(envoys, proms, central)
        yield {"procs": procs, "envoys": envoys, "proms": proms, "central": central, "hey": hey_out, "tmp": tmp}
    finally:
        procs.stop_all()


def test_success_rate_and_p99_match_the_injected_faults(world):
    a = Analyzer(fleet(world["proms"]))
    samples = {(s.metric, s.zone): s for s in asyncio.run(a.collect(canary_spec(), "shop"))}
    sr_c = samples[("request-success-rate", "c")].value
    assert sr_c is not None and abs(sr_c - 95.0) <= 1.0, sr_c
    assert samples[("request-success-rate", "a")].value == pytest.approx(100.0)
    # p99 truth for zone c: the app adds 120 ms; hey's own p99 measures it from outside.
    m = re.search(r"99%% in ([0-9.]+) secs".replace("%%", "%"), world["hey"]["c"])
    truth_ms = float(m.group(1)) * 1000
    got = samples[("request-duration", "c")].value
    envoy_bounds = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000]
    def bucket(v: float) -> int:
        return next(i for i, b in enumerate(envoy_bounds) if v <= b)
    assert got is not None and abs(bucket(got) - bucket(truth_ms)) <= 1, (got, truth_ms)
    print(f"zone c: success {sr_c:.2f}% (injected 95%), p99 {got:.1f} ms (hey p99 {truth_ms:.1f} ms)")


def test_zone_failure_caught_while_global_passes(world):
    spec = canary_spec(min_success=99)
    samples = asyncio.run(Analyzer(fleet(world["proms"])).collect(spec, "shop"))
    by = {(s.metric, s.zone): s for s in samples}
    assert by[("request-success-rate", None)].value > 99.0  # the global figure passes...
    verdict = core_analysis.judge(spec, samples)
    failed = [(c.metric, c.zone) for c in verdict.checks if c.outcome == "fail"]
    assert ("request-success-rate", "c") in failed and ("request-success-rate", None) not in failed
    assert verdict.failed
    print(f"global success {by[('request-success-rate', None)].value:.2f}% passes; zone c "
          f"{by[('request-success-rate', 'c')].value:.2f}% fails")


def test_global_p99_from_merged_buckets_equals_prometheus_over_one_server(world):
    async def zone_buckets(port: int) -> dict[float, float]:
        return await Client(specs.PrometheusSource(url=f"http://127.0.0.1:{port}")).buckets(
            'sum by (le) (envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="frontend-v2"})')

    async def all_zones() -> list[dict[float, float]]:
        return list(await asyncio.gather(*[zone_buckets(p) for p in world["proms"].values()]))

    merged = aggregate.merge(asyncio.run(all_zones()))
    ours = aggregate.quantile(0.99, merged)
    r = httpx.get(f"http://127.0.0.1:{world['central']}/api/v1/query", params={
        "query": 'histogram_quantile(0.99, sum by (le) (envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="frontend-v2"}))'})
    theirs = float(r.json()["data"]["result"][0]["value"][1])
    assert ours == pytest.approx(theirs, rel=0.01), (ours, theirs)
    print(f"merged p99 {ours:.3f} ms vs Prometheus histogram_quantile {theirs:.3f} ms")


def test_a_stopped_prometheus_yields_no_promotion(world):
    spec = canary_spec(min_success=90, threshold=3)
    procs: Supervisor = world["procs"]
    prom_b = next(p for p in procs.procs if p.name == "prom-b")
    procs.stop(prom_b)
    samples = asyncio.run(Analyzer(fleet(world["proms"])).collect(spec, "shop"))
    by = {(s.metric, s.zone): s for s in samples}
    assert by[("request-success-rate", "b")].value is None and by[("request-success-rate", "b")].reason
    assert by[("request-success-rate", None)].value is None  # no global figure over a zone we cannot see
    status = RolloutStatus(phase=Phase.PROGRESSING, target="x", canary_weight=1000, step=3, converged_at=0,
                           next_analysis_at=0, pre_rollout_passed=True)
    from federation.core.decide import target_of

    status = status.with_(target=target_of(spec))
    obs = Observations(spec=spec, applied={z: 3 for z in ("a", "b", "c")},
                       readiness={z: Readiness(100.0, 100.0) for z in ("a", "b", "c")}, metrics=samples)
    out = decide(status, obs, 100.0)
    assert out.status.canary_weight == 1000 and out.status.failed_checks == 1
    assert "b:" in out.status.message or "nodata" in out.status.message
    json.dumps(out.status.for_storage())
