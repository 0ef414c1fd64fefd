"""The Keptn provider against the suite's real kube-apiserver (fixture ``k8s``): a minimal
KeptnMetric CRD written from Keptn's documented schema (tests/data/crds/keptnmetric.yaml) is
applied, a KeptnMetric created and its status written as Keptn's metrics-operator would (the
operator itself does not run). The hub reads it with its member-cluster ServiceAccount token
(clusters/hub/member/member-cluster.yaml grants ``get`` on keptnmetrics), through
``runtimes.kubernetes.ZoneObjects``, as the hub and ``fedctl metrics`` pass it to the Analyzer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from federation.core import spec as specs
from federation.metrics import backends
from federation.metrics.prometheus import NoData, Unreachable
from federation.runtimes.kubernetes import ZoneObjects
from tests import fleets, real_kube

CRD = Path(__file__).resolve().parents[1] / "data" / "crds" / "keptnmetric.yaml"
KM = "metrics.keptn.sh/v1beta1"


def keptn_metric(k8s: real_kube.Cluster, name: str, value: str | None) -> None:
    k8s.server.apply([{"apiVersion": KM, "kind": "KeptnMetric", "metadata": {"name": name, "namespace": "shop"},
                       "spec": {"provider": {"name": "prom"}, "query": "sum(rate(http_requests_total[1m]))",
                                "fetchIntervalSeconds": 10}}])
    if value is not None:
        r = k8s.server.request("PATCH", f"/apis/{KM}/namespaces/shop/keptnmetrics/{name}/status",
                               {"status": {"value": value, "lastUpdated": "2026-12-06T06:00:00Z"}},
                               "application/merge-patch+json")
        assert r.status_code == 200, r.text


@pytest.fixture
def keptn(k8s: real_kube.Cluster) -> real_kube.Cluster:
    k8s.server.apply_file(CRD)
    k8s.server.delete_all(KM, "KeptnMetric", "shop")
    return k8s


def run(k8s: real_kube.Cluster, query: str, kubeconfig: specs.Kubeconfig | None = None) -> float:
    kc = kubeconfig or k8s.member_kc
    fleet = fleets.fleet([fleets.kube_zone("eks", "/dev/null", str(kc.path), context=str(kc.context))])
    kube = ZoneObjects()
    try:
        b = backends.build(specs.MetricProvider(type=specs.MetricProviderType.KEPTN), fleet.spec.zones[0], fleet,
                           "1m", kube)
        assert b is not None
        return asyncio.run(b.scalar(query, 0.0))
    finally:
        kube.close()


def test_keptn_metric_status_value_read_with_the_hubs_member_token(keptn: real_kube.Cluster):
    keptn_metric(keptn, "response-time", "0.237")
    assert run(keptn, "keptnmetric/shop/response-time\n") == 0.237
    assert run(keptn, "KeptnMetrics/Shop/Response-Time") == 0.237  # lower-cased, as Flagger


@pytest.mark.parametrize("value, query, reason", [
    (None, "keptnmetric/shop/m1", "KeptnMetric shop/m1 has no status.value yet"),
    ("fast", "keptnmetric/shop/m1", "status.value 'fast' is not a number"),
    ("NaN", "keptnmetric/shop/m1", "NaN result"),
    ("1", "keptnmetric/shop/other", "KeptnMetric shop/other not found"),
    ("1", "analysis/shop/m1/5m", "analysis queries (a Keptn Analysis run by Keptn's controller) are not supported"),
    ("1", "keptnmetric/shop", "the query must be keptnmetric/<namespace>/<name>"),
])
def test_keptn_without_a_value_is_no_data(keptn: real_kube.Cluster, value, query, reason):
    keptn_metric(keptn, "m1", value)
    with pytest.raises(NoData, match=reason.replace("(", "\\(").replace(")", "\\)")):
        run(keptn, query)


def test_keptn_access_denied_is_unreachable(keptn: real_kube.Cluster):
    """The hub's own-cluster token (hub-cluster.yaml) has no right to read keptnmetrics: 403, one line."""
    keptn_metric(keptn, "m1", "1")
    with pytest.raises(Unreachable, match="keptn: KeptnMetric shop/m1: KeptnMetric m1: access denied \\(403\\)"):
        run(keptn, "keptnmetric/shop/m1", keptn.hub_kc)


def test_keptn_in_a_zone_without_kubernetes_is_no_data():
    fleet = fleets.fleet([fleets.vm_zone("onprem")])
    b = backends.build(specs.MetricProvider(type=specs.MetricProviderType.KEPTN), fleet.spec.zones[0], fleet, "1m",
                       ZoneObjects())
    assert b is not None
    with pytest.raises(NoData, match="zone onprem has no Kubernetes API to read KeptnMetric shop/m"):
        asyncio.run(b.scalar("keptnmetric/shop/m", 0.0))


def test_fedctl_metrics_reads_a_keptn_template_from_the_zones_cluster(keptn: real_kube.Cluster, tmp_path: Path):
    """A Flagger Keptn MetricTemplate unchanged, through ``fedctl metrics --fleet``: the Kubernetes
    zone's kubeconfig (the hub's member token) reads the KeptnMetric; the verdict follows its value."""
    import json

    from tests import provider_stubs
    from tests.cli import fedctl
    from tests.integration.test_metrics_templates import canary, mesh_repo

    keptn_metric(keptn, "frontend-latency", "612.5")
    template = {"apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate", "metadata": {"name": "latency-p99"},
                "spec": {"provider": {"type": "keptn"}, "query": "keptnmetric/{{ namespace }}/{{ service }}-latency"}}
    prom = provider_stubs.prometheus("1")
    try:
        bare = mesh_repo(tmp_path, {"canaries/frontend.yaml": canary(), "templates/keptn.yaml": template})
        kc = keptn.member_kc
        zones = [fleets.kube_zone("eks", "/dev/null", str(kc.path), context=str(kc.context), prometheus={"url": prom.url}),
                 fleets.vm_zone("vms", prometheus=prom.url)]
        (tmp_path / "fleet.json").write_text(json.dumps(fleets.fleet_doc(zones, mesh=fleets.envoy_mesh(str(bare)))))
        r = fedctl("metrics", "frontend", "--fleet", str(tmp_path / "fleet.json"), "--cache", str(tmp_path / "cache"),
                   "-o", "json")
        assert r.returncode == 1, r.stdout + r.stderr  # 612.5 ms is over the template check's max of 500
        assert [(c["zone"], c["value"], c["outcome"]) for c in json.loads(r.stdout)["checks"]] == [("eks", 612.5, "fail")]
    finally:
        prom.close()
