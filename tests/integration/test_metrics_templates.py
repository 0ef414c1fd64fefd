"""``fedctl metrics`` evaluates metrics with ``templateRef`` from the mesh repo's ``templates/``, as
the hub does: the template's query with Flagger's variables filled in reaches the backend; a
template that is missing, invalid or lacks a variable is one line naming the file and field (exit 2)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from federation import specfiles
from tests import fleets, provider_stubs
from tests.cli import fedctl
from tests.unit.test_backends import service_account

TEMPLATE = {"apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate", "metadata": {"name": "latency-p99"},
            "spec": {"provider": {"type": "prometheus"},  # no address: each zone's own Prometheus
                     "query": 'histogram_quantile(0.99, sum(rate(response_latency_ms_bucket{namespace="{{ namespace }}",'
                              'deployment=~"{{ target }}",direction="{{ variables.direction }}"}[{{ interval }}])) by (le))'}}


def canary(variables: dict[str, str] | None = None, ref: str = "latency-p99") -> dict[str, Any]:
    metric: dict[str, Any] = {"name": "latency", "templateRef": {"name": ref}, "interval": "2m",
                              "thresholdRange": {"max": 500}, "scope": "zone"}
    if variables is not None:
        metric["templateVariables"] = variables
    return {"apiVersion": "federation.io/v1alpha1", "kind": "FederatedCanary",
            "metadata": {"name": "frontend", "namespace": "shop"},
            "spec": {"service": {"name": "frontend"}, "primary": {"version": "v1", "zones": ["vms"]},
                     "canary": {"version": "v2", "zones": ["eks"]},
                     "analysis": {"stepWeight": 10, "metrics": [metric]}}}


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def mesh_repo(tmp_path: Path, files: dict[str, Any]) -> Path:
    bare, work = tmp_path / "mesh.git", tmp_path / "mesh-work"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True, capture_output=True)
    for path, doc in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(specfiles.dump([doc]))
    git("add", "-A", cwd=work)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "mesh", cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    return bare


@pytest.fixture
def prom():
    p = provider_stubs.prometheus("120")
    yield p
    p.close()


def run(tmp_path: Path, files: dict[str, Any], prom: provider_stubs.Stub,
        env: dict[str, str] | None = None) -> Any:
    bare = mesh_repo(tmp_path, files)
    fleet = fleets.fleet_doc([fleets.vm_zone(z, prometheus=prom.url) for z in ("eks", "vms")],
                             mesh=fleets.envoy_mesh(str(bare)), name="m")
    (tmp_path / "fleet.json").write_text(json.dumps(fleet))
    return fedctl("metrics", "frontend", "--fleet", str(tmp_path / "fleet.json"), "--cache", str(tmp_path / "cache"),
                  "-o", "json", env=env)


def test_template_ref_is_evaluated_with_flagger_variables(tmp_path: Path, prom: provider_stubs.Stub):
    r = run(tmp_path, {"canaries/frontend.yaml": canary({"direction": "inbound"}),
                       "templates/latency.yaml": TEMPLATE}, prom)
    assert r.returncode == 0, r.stdout + r.stderr
    checks = json.loads(r.stdout)["checks"]
    assert [(c["zone"], c["value"], c["outcome"]) for c in checks] == [("eks", 120.0, "pass")]
    assert [q for q in prom.queries() if q != "vector(1)"] == ['histogram_quantile(0.99, sum(rate(response_latency_ms_bucket{namespace="shop",'
                              'deployment=~"frontend-v2",direction="inbound"}[2m])) by (le))']


@pytest.mark.parametrize("variables, ref, template, message", [
    ({}, "latency-p99", TEMPLATE,
     "canaries/: spec.analysis.metrics[0].templateVariables: metric 'latency': the query uses "
     "{{ variables.direction }} but templateVariables has no 'direction' (has: none) (MetricTemplate 'latency-p99')"),
    ({"direction": "in"}, "latency-p95", TEMPLATE,
     "canaries/: spec.analysis.metrics[0].templateRef: metric 'latency': MetricTemplate 'latency-p95' not found in "),
    ({"direction": "in"}, "latency-p99", {**TEMPLATE, "spec": {**TEMPLATE["spec"], "provider": {"type": "prometheus",
                                                                                             "address": "prometheus:9090"}}},
     "is invalid: templates/latency.yaml: spec.provider.address: 'prometheus:9090' is not an http:// or https:// URL"),
])
def test_a_template_problem_is_one_line_naming_the_field(tmp_path: Path, prom: provider_stubs.Stub,
                                                          variables: dict[str, str], ref: str,
                                                          template: dict[str, Any], message: str):
    r = run(tmp_path, {"canaries/frontend.yaml": canary(variables, ref), "templates/latency.yaml": template}, prom)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert "Traceback" not in r.stderr and [q for q in prom.queries() if q != "vector(1)"] == []


def test_a_datadog_template_goes_to_datadog_not_to_the_zone_prometheus(tmp_path: Path, prom: provider_stubs.Stub):
    dd = provider_stubs.datadog([[1.0, 0.5]], api_key="k1", app_key="k2")
    try:
        template = {"apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate", "metadata": {"name": "latency-p99"},
                    "spec": {"provider": {"type": "datadog", "address": dd.url, "secretRef": {"name": "datadog"}},
                             "query": "avg:trace.http.request.duration{service:{{ target }},env:{{ variables.direction }}}"}}
        secrets = tmp_path / "secrets" / "datadog"
        secrets.mkdir(parents=True)
        (secrets / "datadog_api_key").write_text("k1")
        (secrets / "datadog_application_key").write_text("k2")
        r = run(tmp_path, {"canaries/frontend.yaml": canary({"direction": "prod"}), "templates/dd.yaml": template},
                prom, env={"FEDERATION_SECRETS_DIR": str(tmp_path / "secrets")})
        assert r.returncode == 0, r.stdout + r.stderr
        assert [(c["zone"], c["value"], c["outcome"]) for c in json.loads(r.stdout)["checks"]] == [("eks", 0.5, "pass")]
        assert dd.queries() == ["avg:trace.http.request.duration{service:frontend-v2,env:prod}"]
        assert [q for q in prom.queries() if q != "vector(1)"] == []  # nothing went to Prometheus
        assert "k1" not in r.stdout + r.stderr and "k2" not in r.stdout + r.stderr
    finally:
        dd.close()


def test_a_broken_template_backend_exits_3_naming_the_zone_and_metric(tmp_path: Path, prom: provider_stubs.Stub):
    """A MetricTemplate's provider that answers an error is a broken backend (exit 3, one line per
    zone), not missing traffic (exit 0) — as a zone's broken Prometheus is."""
    dd = provider_stubs.datadog([[1.0, 0.5]], api_key="k1", app_key="k2", status=500)
    try:
        template = {"apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate", "metadata": {"name": "latency-p99"},
                    "spec": {"provider": {"type": "datadog", "address": dd.url, "secretRef": {"name": "datadog"}},
                             "query": "avg:trace.http.request.duration{service:{{ target }}}"}}
        secrets = tmp_path / "secrets" / "datadog"
        secrets.mkdir(parents=True)
        (secrets / "datadog_api_key").write_text("k1")
        (secrets / "datadog_application_key").write_text("k2")
        r = run(tmp_path, {"canaries/frontend.yaml": canary({"direction": "prod"}), "templates/dd.yaml": template},
                prom, env={"FEDERATION_SECRETS_DIR": str(tmp_path / "secrets")})
        assert r.returncode == 3, r.stdout + r.stderr
        assert "zone eks: latency: datadog" in r.stderr and "HTTP 500" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    finally:
        dd.close()


def test_a_splunk_template_goes_to_signalflow_through_fedctl(tmp_path: Path, prom: provider_stubs.Stub):
    """A Flagger Splunk MetricTemplate unchanged (address, secretRef with sf_token_key, a SignalFlow
    program with Flagger's variables) through ``fedctl metrics``: the program reaches the loopback
    SignalFlow server, its last point is the value, nothing goes to Prometheus."""
    sf = provider_stubs.splunk([("AAAA", 0.1), ("AAAA", 0.02)], token="sf-k")
    try:
        template = {"apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate", "metadata": {"name": "latency-p99"},
                    "spec": {"provider": {"type": "splunk", "address": sf.url, "secretRef": {"name": "splunk"}},
                             "query": "data('errors', filter=filter('deployment', '{{ target }}') and "
                                      "filter('env', '{{ variables.direction }}')).sum().publish()"}}
        secrets = tmp_path / "secrets" / "splunk"
        secrets.mkdir(parents=True)
        (secrets / "sf_token_key").write_text("sf-k")
        r = run(tmp_path, {"canaries/frontend.yaml": canary({"direction": "prod"}), "templates/sf.yaml": template},
                prom, env={"FEDERATION_SECRETS_DIR": str(tmp_path / "secrets")})
        assert r.returncode == 0, r.stdout + r.stderr
        assert [(c["zone"], c["value"], c["outcome"]) for c in json.loads(r.stdout)["checks"]] == [("eks", 0.02, "pass")]
        assert [body.decode() for *_, body in sf.asked] == [
            "data('errors', filter=filter('deployment', 'frontend-v2') and filter('env', 'prod')).sum().publish()"]
        assert [q for q in prom.queries() if q != "vector(1)"] == [] and "sf-k" not in r.stdout + r.stderr
    finally:
        sf.close()


def test_the_hub_loads_templates_and_queries_each_zones_provider(tmp_path: Path, prom: provider_stubs.Stub,
                                                                  monkeypatch: pytest.MonkeyPatch):
    """As the hub does (Parts.sync: meshrepo.metric_templates, then the worker's Analyzer.collect):
    an InfluxDB template, overridden per zone in the Fleet (each zone its own InfluxDB)."""
    import asyncio

    from federation.core import spec as specs
    from federation.gitops import meshrepo
    from federation.gitops.aio import AsyncRepo
    from federation.metrics.analysis import Analyzer

    csv = ",result,table,_value\n,,0,{v}\n"
    eks, onprem = provider_stubs.influxdb(csv.format(v=2.5)), provider_stubs.influxdb(csv.format(v=4.0))
    try:
        template = {"apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate", "metadata": {"name": "errors"},
                    "spec": {"provider": {"type": "influxdb", "address": "http://127.0.0.1:1",
                                          "secretRef": {"name": "influx"}},
                             "query": 'from(bucket: "b") |> range(start: -{{ interval }}) '
                                      '|> filter(fn: (r) => r["workload"] == "{{ target }}" and r["zone"] == "{{ zone }}")'}}
        bare = mesh_repo(tmp_path, {"templates/errors.yaml": template})
        monkeypatch.setenv("FEDERATION_SECRET_INFLUX_TOKEN", "tok")
        monkeypatch.setenv("FEDERATION_SECRET_INFLUX_ORG", "ops")
        fleet = fleets.fleet([fleets.vm_zone(z, prometheus=prom.url,
                                             metricProviders=[{"type": "influxdb", "address": url}])
                              for z, url in (("eks", eks.url), ("onprem", onprem.url))] + [fleets.vm_zone("vms")],
                             mesh=fleets.envoy_mesh(str(bare)))
        spec = specs.CanarySpec.model_validate({
            "service": {"name": "frontend"}, "primary": {"version": "v1", "zones": ["vms"]},
            "canary": {"version": "v2", "zones": ["eks", "onprem"]},
            "analysis": {"stepWeight": 10, "metrics": [{"name": "errors", "templateRef": {"name": "errors"},
                                                        "interval": "5m", "thresholdRange": {"max": 3}}]}})

        async def hub() -> Any:
            mesh = AsyncRepo.of(fleet.spec.mesh.git, tmp_path / "hub-mesh")
            await mesh.ensure()
            return await Analyzer(fleet, metric_templates=await meshrepo.metric_templates(mesh)).collect(spec, "shop")

        by = {s.zone: s.value for s in asyncio.run(hub())}
        assert by == {None: 4.0, "eks": 2.5, "onprem": 4.0}  # worst zone by default
        assert [b.decode() for *_, b in eks.asked] == [
            'from(bucket: "b") |> range(start: -5m) |> filter(fn: (r) => r["workload"] == "frontend-v2" and r["zone"] == "eks")']
        assert len(onprem.asked) == 1 and [q for q in prom.queries() if q != "vector(1)"] == []
    finally:
        eks.close()
        onprem.close()


def test_fedctl_metrics_shows_a_failing_dry_run_metric_without_failing(tmp_path: Path, prom: provider_stubs.Stub):
    doc = canary({"direction": "inbound"})
    doc["spec"]["analysis"]["metrics"].append({"name": "errors", "query": 'sum(errors_total{app="{{ target }}"})',
                                               "thresholdRange": {"max": 5}, "dryRun": True})
    r = run(tmp_path, {"canaries/frontend.yaml": doc, "templates/latency.yaml": TEMPLATE}, prom)
    assert r.returncode == 0, r.stdout + r.stderr  # 120 errors > 5, but dry-run
    checks = {(c["metric"], c["zone"]): c for c in json.loads(r.stdout)["checks"]}
    assert checks[("errors", "global")]["outcome"] == "fail" and checks[("errors", "global")]["dryRun"] is True
    assert checks[("latency", "eks")]["dryRun"] is False
    table = fedctl("metrics", "frontend", "--fleet", str(tmp_path / "fleet.json"), "--cache", str(tmp_path / "cache"))
    assert table.returncode == 0 and "fail (dry-run)" in table.stdout


CW_QUERY = ('[{"Id": "e1", "Expression": "m1 / m2", "Label": "ErrorRate"}, {"Id": "m1", "MetricStat": {"Metric": '
            '{"Namespace": "MyCluster", "MetricName": "ErrorCount", "Dimensions": [{"Name": "appName", '
            '"Value": "{{ target }}"}]}, "Period": 60, "Stat": "Sum"}, "ReturnData": false}]')


def _case(kind: str) -> tuple[Callable[[float], provider_stubs.Stub], dict[str, Any], dict[str, str], str, bool]:
    """(stub for a value, provider fields besides the address, secret files, query, whether each zone
    gets its own server) of one Flagger provider type, as its documented API and secret keys say."""
    if kind == "prometheus":
        return (lambda v: provider_stubs.prometheus(str(v)), {}, {},
                'sum(rate(errors_total{deployment="{{ target }}"}[{{ interval }}]))', True)
    if kind == "datadog":
        return (lambda v: provider_stubs.datadog([[1.0, v]], api_key="k1", app_key="k2"), {},
                {"datadog_api_key": "k1", "datadog_application_key": "k2"},
                "sum:trace.http.request.errors{service:{{ target }}}.as_rate()", True)
    if kind == "graphite":
        return (lambda v: provider_stubs.graphite([[v, 1]], auth=("hub", "pw")), {},
                {"username": "hub", "password": "pw"}, "target=errors.{{ target }}.rate", True)
    if kind == "influxdb":
        return (lambda v: provider_stubs.influxdb(f",result,table,_value\n,,0,{v}\n", token="t0k", org="ops"), {},
                {"token": "t0k", "org": "ops"},
                'from(bucket: "b") |> range(start: -{{ interval }}) |> filter(fn: (r) => r["app"] == "{{ target }}")', True)
    if kind == "newrelic":
        return (lambda v: provider_stubs.newrelic({"result": v}), {},
                {"newrelic_account_id": "1234", "newrelic_query_key": "nr-query"},
                "SELECT percentage(count(*), WHERE error IS true) FROM Transaction WHERE appName = '{{ target }}'", True)
    if kind == "dynatrace":
        return (lambda v: provider_stubs.dynatrace([v], token="dt0c01.x"), {}, {"dynatrace_token": "dt0c01.x"},
                "builtin:service.errors.total.rate", True)
    if kind == "cloudwatch":
        return (lambda v: provider_stubs.cloudwatch([v], access_key="AKIDTEST", secret_key="s3cr3t",
                                                    region="eu-west-1"),
                {"region": "eu-west-1"}, {"aws_access_key_id": "AKIDTEST", "aws_secret_access_key": "s3cr3t"},
                CW_QUERY, True)
    if kind == "splunk":
        return (lambda v: provider_stubs.splunk([("AAAA", v)], token="sf-k"), {}, {"sf_token_key": "sf-k"},
                "data('errors', filter=filter('deployment', '{{ target }}')).sum().publish()", True)
    assert kind == "stackdriver"
    # One Google project for every zone: the service account's token endpoint is that server's.
    account, public = service_account("parity")
    return (lambda v: provider_stubs.google(public, [{"doubleValue": v}]), {},
            {"project": "shop-prod", "serviceAccountKey": json.dumps(account)},
            "fetch k8s_container | metric 'istio.io/service/server/request_count' "
            "| filter resource.container_name == '{{ target }}' | within 5m", False)


@pytest.mark.parametrize("kind", ["prometheus", "datadog", "graphite", "influxdb", "newrelic", "dynatrace",
                                  "cloudwatch", "splunk", "stackdriver"])
def test_a_template_of_each_provider_gives_the_same_verdict_through_fedctl_and_the_hub_api(
        tmp_path: Path, prom: provider_stubs.Stub, kind: str):
    """One Flagger MetricTemplate per provider type, unchanged (overridden for zone onprem to its own
    server where the provider has sites), judged by ``fedctl metrics --fleet`` and by a running hub's
    ``GET /api/v1/rollouts/shop/frontend/metrics`` (the real Hub, API and Analyzer; in-memory zones,
    tests/hubfakes.py): the same values and outcomes per zone and globally, the failing check fails
    both ways, and nothing goes to the zones' own Prometheus."""
    stub, fields, keys, query, per_zone = _case(kind)
    us = stub(0.8)
    eu = stub(0.3) if per_zone else us
    try:
        if kind == "stackdriver":  # the token endpoint is the server's own
            account = json.loads(keys["serviceAccountKey"])
            keys = {**keys, "serviceAccountKey": json.dumps({**account, "token_uri": f"{us.url}/token"})}
        template = {"apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate", "metadata": {"name": "errors"},
                    "spec": {"provider": {"type": kind, "address": us.url, "secretRef": {"name": "provider"}, **fields},
                             "query": query}}
        doc = canary(ref="errors")
        doc["spec"]["canary"]["zones"] = ["eks", "onprem"]
        doc["spec"]["analysis"]["metrics"][0].update({"scope": "both", "thresholdRange": {"max": 0.5}})
        secrets = tmp_path / "secrets" / "provider"
        secrets.mkdir(parents=True)
        for k, v in keys.items():
            (secrets / k).write_text(v)
        bare = mesh_repo(tmp_path, {"canaries/frontend.yaml": doc, "templates/errors.yaml": template})
        override = [{"type": kind, "address": eu.url}] if per_zone else []
        zones = [fleets.vm_zone("eks", prometheus=prom.url),
                 fleets.vm_zone("onprem", prometheus=prom.url, metricProviders=override),
                 fleets.vm_zone("vms", prometheus=prom.url)]
        fleet_doc = fleets.fleet_doc(zones, mesh=fleets.envoy_mesh(str(bare)), name="m")
        fleet_doc["spec"]["metrics"] = {"secretsDir": str(tmp_path / "secrets")}
        (tmp_path / "fleet.json").write_text(json.dumps(fleet_doc))

        r = fedctl("metrics", "frontend", "--fleet", str(tmp_path / "fleet.json"), "--cache", str(tmp_path / "cache"),
                   "-o", "json")
        assert r.returncode == 1, r.stdout + r.stderr  # a check failed on real figures
        by_cli = [(c["metric"], c["zone"], c["value"], c["outcome"]) for c in json.loads(r.stdout)["checks"]]
        assert not any(v in r.stdout + r.stderr for v in keys.values() if len(v) > 3)  # no secret printed

        checks = hub_metrics(tmp_path, fleet_doc, doc, [("templates/errors.yaml", template)])["checks"]
        by_hub = [(ch["metric"], ch["zone"] or "global", ch["value"], ch["outcome"]) for ch in checks]
        eu_value, eu_outcome = (0.3, "pass") if per_zone else (0.8, "fail")
        assert by_cli == by_hub == [("latency", "global", 0.8, "fail"), ("latency", "eks", 0.8, "fail"),
                                    ("latency", "onprem", eu_value, eu_outcome)]
        asked = len(us.asked) + (len(eu.asked) if per_zone else 0)
        assert asked >= 4, (us.asked, eu.asked)  # each zone, by fedctl and by the hub
        if kind != "prometheus":
            assert [q for q in prom.queries() if q != "vector(1)"] == []  # nothing went to the zones' Prometheus
    finally:
        us.close()
        if per_zone:
            eu.close()


def hub_metrics(tmp_path: Path, fleet_doc: dict[str, Any], canary_doc: dict[str, Any],
                templates: list[tuple[str, dict[str, Any]]], kube: Any = None) -> dict[str, Any]:
    """A running hub's ``GET /api/v1/rollouts/NS/NAME/metrics`` (the real Hub, API and Analyzer with
    the given MetricTemplates and zone readers; in-memory zones, tests/hubfakes.py)."""
    import asyncio
    import time

    import httpx

    from federation.core import spec as specs
    from federation.hub.api import app_for
    from federation.hub.service import Hub
    from federation.hub.store import MemoryStore
    from federation.metrics.analysis import Analyzer
    from tests import hubfakes

    fleet = specs.Fleet.model_validate(fleet_doc)
    c = specs.FederatedCanary.model_validate(canary_doc)
    parts = hubfakes.MemoryParts(fleet, [c])
    parts.analyzer = Analyzer(fleet, kube=kube, metric_templates=specfiles.metric_templates(  # type: ignore[assignment]
        [(path, specfiles.dump([t])) for path, t in templates]))
    hub = Hub(fleet, tmp_path / "hub", tick=0.05, discover_every=1.0, store=MemoryStore(), parts=parts)

    async def ask() -> dict[str, Any]:
        task = asyncio.create_task(hub.run())
        try:
            deadline = time.monotonic() + 60
            while c.key not in hub.canaries:
                assert time.monotonic() < deadline, "the hub did not discover the canary"
                await asyncio.sleep(0.05)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app_for(hub, "t" * 32)), base_url="http://hub",
                                         timeout=60, headers={"Authorization": "Bearer " + "t" * 32}) as client:
                res = await client.get(f"/api/v1/rollouts/{c.key}/metrics")
                assert res.status_code == 200, res.text
                return res.json()  # type: ignore[no-any-return]
        finally:
            hub.stop()
            await asyncio.wait_for(task, 30)

    return asyncio.run(ask())
