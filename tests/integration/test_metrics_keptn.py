"""The Keptn provider against the suite's real kube-apiserver (fixture ``k8s``): a minimal
KeptnMetric CRD written from Keptn's documented schema (tests/data/crds/keptnmetric.yaml) is
applied, a KeptnMetric created and its status written as Keptn's metrics-operator would (the
operator itself does not run). The hub reads it with its member-cluster ServiceAccount token
(clusters/hub/member/member-cluster.yaml grants ``get`` on keptnmetrics), through
``runtimes.kubernetes.ZoneObjects``, as the hub and ``fedctl metrics`` pass it to the Analyzer."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from federation.core import spec as specs
from federation.metrics import backends
from federation.metrics.prometheus import NoData, Unreachable
from federation.runtimes.kubernetes import ZoneObjects
from tests import fleets, real_kube

CRD = Path(__file__).resolve().parents[1] / "data" / "crds" / "keptnmetric.yaml"
ANALYSIS_CRD = Path(__file__).resolve().parents[1] / "data" / "crds" / "analysis.yaml"
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
    k8s.server.apply_file(ANALYSIS_CRD)
    k8s.server.delete_all(KM, "KeptnMetric", "shop")
    k8s.server.delete_all(KM, "Analysis", "shop")
    return k8s


class KeptnOperator:
    """Plays Keptn's metrics-operator for Analyses (it does not run in tests): every Analysis in
    namespace shop without a status gets ``Completed`` with ``pass`` as ``verdicts`` says for its
    definition; the specs it saw are kept. Stopped by ``stop``."""

    def __init__(self, k8s: real_kube.Cluster, verdicts: dict[str, bool]) -> None:
        self.k8s, self.verdicts, self.seen = k8s, verdicts, {}
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self._stop.wait(0.1):  # the operator's reconcile loop, not a test's synchronisation
            r = self.k8s.server.request("GET", f"/apis/{KM}/namespaces/shop/analyses")
            for a in r.json().get("items", []) if r.status_code == 200 else []:
                name = a["metadata"]["name"]
                if a.get("status") or name in self.seen:
                    continue
                self.seen[name] = a["spec"]
                verdict = self.verdicts.get(a["spec"]["analysisDefinition"]["name"])
                if verdict is not None:
                    self.k8s.server.request("PATCH", f"/apis/{KM}/namespaces/shop/analyses/{name}/status",
                                            {"status": {"state": "Completed", "pass": verdict}},
                                            "application/merge-patch+json")

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)


def analyses_left(k8s: real_kube.Cluster) -> list[str]:
    r = k8s.server.request("GET", f"/apis/{KM}/namespaces/shop/analyses")
    return [a["metadata"]["name"] for a in r.json()["items"]]


def test_an_analysis_query_runs_a_keptn_analysis_and_reads_its_verdict(keptn: real_kube.Cluster):
    """Flagger's analysis/<namespace>/<definition>/<timeframe>/<args> form, with the hub's member
    token: an Analysis is created (its spec as Flagger writes it), its status read once Keptn
    completed it (1 passed, 0 failed), and it is deleted afterwards."""
    operator = KeptnOperator(keptn, {"frontend-slo": True, "strict-slo": False})
    try:
        assert run(keptn, "analysis/shop/frontend-slo/5m/service=frontend;version=v2") == 1.0
        assert run(keptn, "Analysis/Shop/Strict-SLO") == 0.0
    finally:
        operator.stop()
    specs_seen = sorted(operator.seen.items())
    assert [(n.rsplit("-", 1)[0], len(n.rsplit("-", 1)[1])) for n, _ in specs_seen] == [("frontend-slo", 6), ("strict-slo", 6)]
    assert [s for _, s in specs_seen] == [
        {"analysisDefinition": {"name": "frontend-slo"}, "timeframe": {"recent": "5m"},
         "args": {"service": "frontend", "version": "v2"}},
        {"analysisDefinition": {"name": "strict-slo"}, "timeframe": {"recent": "1m"}, "args": {}}]
    assert analyses_left(keptn) == []


def test_an_analysis_keptn_never_completes_is_no_data_and_is_deleted(keptn: real_kube.Cluster):
    from federation.metrics.backends.keptn import Keptn

    kc = keptn.member_kc
    fleet = fleets.fleet([fleets.kube_zone("eks", "/dev/null", str(kc.path), context=str(kc.context))])
    kube = ZoneObjects()
    try:
        b = Keptn(fleet.spec.zones[0], kube, analysis_timeout=2.0, poll=0.2)
        with pytest.raises(NoData, match=r"Keptn Analysis shop/slo-[0-9a-f]{6} not completed within 2s "
                                         r"\(is Keptn's metrics-operator running in the zone\?\)"):
            asyncio.run(b.scalar("analysis/shop/slo", 0.0))
    finally:
        kube.close()
    assert analyses_left(keptn) == []


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
    ("1", "analysis/shop/m1/5 minutes", "analysis timeframe '5 minutes' is not a duration"),
    ("1", "analysis/shop/m1/5m/a=b c", "analysis argument 'a=b c' must be key=value"),
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
        by_cli = [(c["zone"], c["value"], c["outcome"]) for c in json.loads(r.stdout)["checks"]]
        assert by_cli == [("eks", 612.5, "fail")]
        # The same template through a running hub (the real Hub, API and Analyzer with the zones'
        # Kubernetes readers; in-memory zones): the same figure and verdict.
        assert hub_checks(tmp_path, json.loads((tmp_path / "fleet.json").read_text()), canary(), template) == by_cli
    finally:
        prom.close()


def hub_checks(tmp_path: Path, fleet_doc: dict, canary_doc: dict, template: dict) -> list[tuple]:
    from tests.integration.test_metrics_templates import hub_metrics

    kube = ZoneObjects()
    try:
        checks = hub_metrics(tmp_path, fleet_doc, canary_doc, [("templates/keptn.yaml", template)], kube)["checks"]
    finally:
        kube.close()
    return [(ch["zone"] or "global", ch["value"], ch["outcome"]) for ch in checks]
