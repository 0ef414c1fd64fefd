"""The hub's /metrics from TickReports: Flagger's series (names, labels, Flagger's status mapping)
beside ours, per zone, as a rollout walks its steps through the real core."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from federation.core import spec as specs
from federation.core.state import MetricSample, Phase
from federation.hub.metrics import HubMetrics
from federation.hub.worker import TickReport
from tests import hubfakes
from tests.unit import builders

KEY = "shop/frontend"


def samples(m: HubMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(m.text().decode()) for s in fam.samples}


def value(m: HubMetrics, series: str, /, **labels: str) -> float:
    return samples(m)[(series, frozenset(labels.items()))]


class Unreachable(hubfakes.ZoneSeen):
    def reasons(self) -> list[str]:
        return [f"unreachable: fed-agent@{self.zone}-1:22: cannot connect"]


class Run:
    """The core's ticks on a fake clock, each handed to HubMetrics as the hub does."""

    def __init__(self, spec: specs.CanarySpec) -> None:
        self.driver = builders.Driver(spec)
        self.metrics = HubMetrics(hubfakes.fleet())

    def tick(self, advance: float = 0.0, unreachable: str = "", **obs: object) -> TickReport:
        d = self.driver
        before = d.status
        d.now += advance
        observations = builders.observe(d.spec, before, **obs)  # type: ignore[arg-type]
        decision = builders.decide(before, observations, d.now)
        d.status = decision.status
        zones = {z: Unreachable(z, None) if z == unreachable else hubfakes.ZoneSeen(z, before.step)
                 for z in observations.applied}
        report = TickReport(KEY, d.now, before, decision, observations, zones)  # type: ignore[arg-type]
        self.metrics.observe(report, 0.2)
        return report

    def until(self, check: object, advance: float = 60.0, limit: int = 40, **obs: object) -> int:
        for n in range(limit):
            if check(self.driver.status):  # type: ignore[operator]
                return n
            self.tick(advance, **obs)
        raise AssertionError(f"not reached in {limit} ticks: {self.driver.status}")


def test_a_promoted_rollout_in_flaggers_series_and_ours():
    run = Run(builders.canary())
    m = run.metrics
    assert value(m, "flagger_info", version="0.1.0", mesh_provider="kuma") == 1
    ticks = run.until(lambda s: s.phase is Phase.PROGRESSING and s.canary_weight == 4000 and s.converged_at)
    # Flagger: 0 while Progressing; primary and canary weights in percent, by workload.
    assert value(m, "flagger_canary_status", name="frontend", namespace="shop") == 0
    assert value(m, "flagger_canary_weight", workload="frontend-primary", namespace="shop") == 60
    assert value(m, "flagger_canary_weight", workload="frontend", namespace="shop") == 40
    assert value(m, "flagger_canary_metric_analysis", name="frontend", namespace="shop",
                 metric="request-success-rate") == 99.9
    assert value(m, "flagger_canary_duration_seconds_count", name="frontend", namespace="shop") == ticks
    assert value(m, "flagger_canary_duration_seconds_bucket", name="frontend", namespace="shop", le="0.25") == ticks
    # Ours: per zone, the figures against their threshold, the subsets of the step.
    for zone in ("eks", "onprem", "global"):
        assert value(m, "federation_canary_metric_value", name="frontend", namespace="shop",
                     metric="request-success-rate", zone=zone) == 99.9
    assert value(m, "federation_canary_metric_threshold", name="frontend", namespace="shop",
                 metric="request-success-rate", bound="min") == 99
    assert value(m, "federation_subset_weight", name="frontend", namespace="shop", zone="eks", version="v2") == 20
    assert value(m, "federation_subset_weight", name="frontend", namespace="shop", zone="vms", version="v1") == 60
    assert value(m, "federation_canary_phase", name="frontend", namespace="shop", phase="Progressing") == 1
    assert value(m, "federation_canary_phase", name="frontend", namespace="shop", phase="Succeeded") == 0
    assert value(m, "federation_zone_up", name="frontend", namespace="shop", zone="eks") == 1
    assert value(m, "federation_canary_progress_deadline_seconds", name="frontend", namespace="shop") == 600
    run.until(lambda s: s.phase is Phase.SUCCEEDED)
    assert value(m, "flagger_canary_status", name="frontend", namespace="shop") == 1
    assert value(m, "federation_canary_status", name="frontend", namespace="shop") == 1
    assert value(m, "flagger_canary_weight", workload="frontend-primary", namespace="shop") == 100
    assert value(m, "flagger_canary_weight", workload="frontend", namespace="shop") == 0
    assert value(m, "flagger_canary_successes_total", name="frontend", namespace="shop",
                 deployment_strategy="canary", analysis_status="completed") == 1
    # At 0, not absent: a dashboard's increase() over it answers 0, not "no data".
    assert value(m, "flagger_canary_failures_total", name="frontend", namespace="shop",
                 deployment_strategy="canary", analysis_status="completed") == 0


def test_a_rolled_back_rollout_counts_its_failed_checks_per_zone():
    spec = builders.canary()
    run = Run(spec)
    run.until(lambda s: s.phase is Phase.PROGRESSING and s.canary_weight == 2000 and s.converged_at)
    bad = tuple(MetricSample(x.metric, x.zone, 90.0 if x.zone in (None, "onprem") else x.value, requests=x.requests)
                for x in builders.good_metrics(spec))
    run.until(lambda s: s.phase is Phase.FAILED, metrics=bad, unreachable="eks")
    m = run.metrics
    assert value(m, "flagger_canary_status", name="frontend", namespace="shop") == 2
    assert value(m, "federation_canary_status", name="frontend", namespace="shop") == 2
    assert value(m, "flagger_canary_failures_total", name="frontend", namespace="shop",
                 deployment_strategy="canary", analysis_status="completed") == 1
    assert value(m, "flagger_canary_metric_analysis", name="frontend", namespace="shop",
                 metric="request-success-rate") == 90
    # threshold 2: two failed runs, each failing the global figure and onprem's; eks passed.
    assert value(m, "federation_canary_check_failures_total", name="frontend", namespace="shop",
                 metric="request-success-rate", zone="onprem") == 2
    assert value(m, "federation_canary_check_failures_total", name="frontend", namespace="shop",
                 metric="request-success-rate", zone="global") == 2
    assert value(m, "federation_canary_check_failures_total", name="frontend", namespace="shop",
                 metric="request-success-rate", zone="eks") == 0
    assert value(m, "federation_zone_up", name="frontend", namespace="shop", zone="eks") == 0
    assert value(m, "federation_zone_up", name="frontend", namespace="shop", zone="onprem") == 1


def test_discovery_counts_canaries_per_namespace_and_this_replicas_leases():
    m = HubMetrics(hubfakes.fleet())
    m.discovery(["shop/a", "shop/b", "web/c"], owned=["shop/a"], sharded=True, now=100.0)
    assert value(m, "flagger_canary_total", namespace="shop") == 2
    assert value(m, "flagger_canary_total", namespace="web") == 1
    assert value(m, "federation_hub_leases_held") == 1
    assert value(m, "federation_hub_rollouts_discovered") == 3
    assert value(m, "federation_hub_last_discovery_timestamp_seconds") == 100
    m.discovery(["shop/a"], owned=[], sharded=True, now=102.0)
    assert value(m, "flagger_canary_total", namespace="web") == 0
    assert value(m, "federation_hub_leases_held") == 0
    m.discovery(["shop/a"], owned=["shop/a"], sharded=False, now=104.0)
    assert value(m, "federation_hub_sharded") == 0 and value(m, "federation_hub_leases_held") == 0


def test_a_rollout_this_replica_no_longer_runs_leaves_its_series():
    """Its Lease moved: the replica that runs it now exports its figures; stale ones here would
    double Flagger's series and make it look stuck."""
    run = Run(builders.canary())
    run.until(lambda s: s.phase is Phase.PROGRESSING and s.canary_weight == 2000)
    m = run.metrics
    m.discovery([KEY], owned=[KEY], sharded=True, now=1.0)
    assert value(m, "flagger_canary_weight", workload="frontend", namespace="shop") == 20
    m.discovery([KEY], owned=[], sharded=True, now=2.0)
    left = {n for (n, labels) in samples(m) if ("namespace", "shop") in labels}
    assert left == {"flagger_canary_total"}, left
