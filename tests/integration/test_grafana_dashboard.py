"""deploy/grafana/federation.json: every panel's expression parses (as recording rules, through
`promtool check rules`), and every metric it reads is on the /metrics of a running hub (real Hub,
worker, core and API on in-memory zones, a rollout past its first steps) or is one of the zone
ingress Envoy metrics listed here — which a real Envoy serving the demo app exports."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from federation.demo.procs import Supervisor, wait_for
from federation.hub.api import app_for
from federation.hub.service import Hub
from federation.hub.store import MemoryStore
from tests import hubfakes, promtool
from tests.integration.conftest import bootstrap, free_port, start_app, start_envoy, static_cluster

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "federation.json"
# What the dashboard reads from the zones' ingress Envoys (/stats/prometheus, scraped by each
# zone's Prometheus with a `zone` label): the same series the metric templates query.
ENVOY_METRICS = {
    "envoy_cluster_upstream_rq",  # per envoy_response_code
    "envoy_cluster_upstream_rq_total",
    "envoy_cluster_upstream_rq_xx",  # per envoy_response_code_class
    "envoy_cluster_upstream_rq_time_bucket",
    "envoy_cluster_membership_healthy",
}
# Grafana's variables, as a query would see them expanded.
GRAFANA_VARS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
            "offset", "inf", "nan"}


def panels(node: Any) -> list[dict[str, Any]]:
    out = []
    for p in node.get("panels", []):
        out.append(p)
        out.extend(panels(p))
    return out


def expressions() -> list[tuple[str, str]]:
    """(panel id/refId, expression) of every panel target."""
    dash = json.loads(DASHBOARD.read_text())
    return [(f"panel_{p['id']}_{t['refId']}", t["expr"]) for p in panels(dash) for t in p.get("targets", [])]


def expand(expr: str) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: GRAFANA_VARS.get(m.group(1), ".+"), expr)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers outside strings, label matchers,
    ranges and grouping clauses, not called as functions, not keywords."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = {m.group(1) for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", e) if not m.group(2)}
    return {n for n in names if n.lower() not in KEYWORDS}


def test_the_name_extraction_on_a_known_expression():
    e = ('histogram_quantile(0.99, sum by (le, zone) (rate(envoy_cluster_upstream_rq_time_bucket{zone=~"a|b"}[5m])))'
         ' / on (zone) group_left () max(up offset 5m) > bool 2')
    assert metric_names(e) == {"envoy_cluster_upstream_rq_time_bucket", "up"}


def test_every_panel_expression_parses(tmp_path: Path):
    exprs = expressions()
    assert len(exprs) >= 20
    rules = {"groups": [{"name": "grafana-panels", "rules": [
        {"record": f"grafana:{ref}", "expr": expand(e)} for ref, e in exprs]}]}
    path = tmp_path / "panels.yaml"
    path.write_text(yaml.safe_dump(rules))
    checked = promtool.run("check", "rules", path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in checked.stdout
    # promtool does refuse a broken one.
    broken = {"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "sum by (le (rate(x[5m]))"}]}]}
    path.write_text(yaml.safe_dump(broken))
    assert promtool.run("check", "rules", path).returncode == 1


def hub_series(tmp_path: Path) -> set[str]:
    """Every series name a running hub declares on /metrics once its rollout has taken steps."""
    parts = hubfakes.MemoryParts(hubfakes.fleet(), [hubfakes.canary(interval="1s")])
    hub = Hub(hubfakes.fleet(), tmp_path / "hub", tick=0.05, discover_every=1.0, store=MemoryStore(), parts=parts)
    names: set[str] = set()

    async def go() -> None:
        task = asyncio.create_task(hub.run())
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app_for(hub, "t" * 32)),
                                         base_url="http://hub", timeout=60) as client:
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    text = (await client.get("/metrics")).text
                    if 'flagger_canary_weight{namespace="shop",workload="frontend"} 40.0' in text:
                        break
                    await asyncio.sleep(0.02)
                else:
                    raise AssertionError("the rollout did not reach 40% in 120s")
                for fam in text_string_to_metric_families(text):
                    names.update({"counter": {fam.name + "_total"},
                                  "histogram": {fam.name + s for s in ("_bucket", "_sum", "_count")}}
                                 .get(fam.type, {fam.name}))
                    names.update(s.name for s in fam.samples)
        finally:
            hub.stop()
            await asyncio.wait_for(task, 30)

    asyncio.run(go())
    return names


def test_every_metric_is_exported_by_a_running_hub_or_the_zone_envoys(tmp_path: Path):
    dash = json.loads(DASHBOARD.read_text())
    used: set[str] = set()
    for _, e in expressions():
        used |= metric_names(e)
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            used |= metric_names(re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", v["definition"]))
    hub = hub_series(tmp_path)
    assert {"flagger_canary_status", "flagger_canary_weight", "federation_subset_weight"} <= hub
    assert used - hub - ENVOY_METRICS == set(), "read by the dashboard, exported by nothing"
    assert used & ENVOY_METRICS == ENVOY_METRICS, "listed but unread"
    assert {n for n in used if n.startswith(("flagger_", "federation_"))} <= hub


def test_the_listed_envoy_metrics_are_what_a_zone_envoy_exports(tmp_path: Path):
    """A zone ingress as the demo runs it: an Envoy with one cluster per local version
    (<service>-<version>) in front of the demo app; after some requests its /stats/prometheus
    holds every series the dashboard reads."""
    procs = Supervisor(tmp_path / "logs")
    try:
        app = start_app(procs, "app-v1", "v1", "vms")
        admin, listener = free_port(), free_port()
        route = {"route_config": {"name": "r", "virtual_hosts": [{"name": "r", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "route": {"cluster": "frontend-v1"}}]}]}}
        start_envoy(procs, tmp_path, "zone-ingress", bootstrap(admin, listener, [static_cluster("frontend-v1", app)],
                                                                route))
        for _ in range(20):
            httpx.get(f"http://127.0.0.1:{listener}/", timeout=5)

        def exported() -> set[str]:
            # Sample names as written (prometheus_client's parser folds Envoy's counter
            # envoy_cluster_upstream_rq into envoy_cluster_upstream_rq_total's family).
            text = httpx.get(f"http://127.0.0.1:{admin}/stats/prometheus", timeout=5).text
            return {line.split("{", 1)[0] for line in text.splitlines()
                    if 'envoy_cluster_name="frontend-v1"' in line and not line.startswith("#")}
        try:
            wait_for(lambda: exported() >= ENVOY_METRICS, 30, "the listed series on the Envoy")
        except TimeoutError:
            raise AssertionError(f"missing on the Envoy: {ENVOY_METRICS - exported()}") from None
    finally:
        procs.stop_all()
