"""``fedctl metrics`` evaluates metrics with ``templateRef`` from the mesh repo's ``templates/``, as
the hub does: the template's query with Flagger's variables filled in reaches the backend; a
template that is missing, invalid or lacks a variable is one line naming the file and field (exit 2)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from federation import specfiles
from tests import fleets, provider_stubs
from tests.cli import fedctl

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
