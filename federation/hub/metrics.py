"""The hub's own /metrics (prometheus_client), named like Flagger's where the meaning is the same.

``federation_canary_status`` (0 running, 1 successful, 2 failed), ``federation_canary_weight``,
``federation_canary_duration_seconds``, ``federation_canary_successes_total`` and
``federation_canary_failures_total``, plus per-subset weights and step latency (commit to
converged everywhere). Callers: the hub service after each tick.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from federation.core.state import Phase, RolloutStatus, SetWeights
from federation.hub.worker import TickReport


class HubMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.status = Gauge("federation_canary_status", "Rollout status: 0 running, 1 successful, 2 failed",
                            ["name", "namespace"], registry=r)
        self.weight = Gauge("federation_canary_weight", "Canary weight in percent", ["workload", "namespace"], registry=r)
        self.subset = Gauge("federation_subset_weight", "Weight of one (zone, version) subset in percent",
                            ["name", "namespace", "zone", "version"], registry=r)
        self.duration = Histogram("federation_canary_duration_seconds", "Duration of one analysis tick",
                                  ["name", "namespace"], registry=r)
        self.successes = Counter("federation_canary_successes_total", "Rollouts promoted", ["name", "namespace"], registry=r)
        self.failures = Counter("federation_canary_failures_total", "Rollouts rolled back", ["name", "namespace"], registry=r)
        self.failed_checks = Gauge("federation_canary_failed_checks", "Failed checks in the current run",
                                   ["name", "namespace"], registry=r)
        self.step_latency = Histogram("federation_step_latency_seconds", "From a step's commit to every zone applying it",
                                      ["name", "namespace"], buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
                                      registry=r)
        self.zone_applied = Gauge("federation_zone_applied_step", "Last step a zone reported applied (-1 unknown)",
                                  ["name", "namespace", "zone"], registry=r)

        self.invalid = Gauge("federation_canary_invalid", "1 while the rollout's file in the mesh repo is invalid "
                             "(it runs its last valid spec)", ["name", "namespace"], registry=r)
        self.problems = Gauge("federation_spec_problems", "Files in the mesh repo that are not valid rollouts", registry=r)

    def discovered(self, running: list[str], invalid: dict[str, str], problems: int) -> None:
        for key in running:
            ns, name = key.split("/", 1)
            self.invalid.labels(name, ns).set(1 if key in invalid else 0)
        self.problems.set(problems)

    def observe(self, report: TickReport, seconds: float) -> None:
        ns, name = report.key.split("/", 1)
        before, st = report.status, report.decision.status
        self.status.labels(name, ns).set(status_code(st))
        self.weight.labels(name, ns).set(st.canary_weight / 100)
        self.failed_checks.labels(name, ns).set(st.failed_checks)
        self.duration.labels(name, ns).observe(seconds)
        if st.phase != before.phase:
            if st.phase is Phase.SUCCEEDED:
                self.successes.labels(name, ns).inc()
            elif st.phase is Phase.FAILED:
                self.failures.labels(name, ns).inc()
        for a in report.decision.actions:
            if isinstance(a, SetWeights):
                for s, w in a.weights:
                    self.subset.labels(name, ns, s.zone, s.version).set(w / 100)
        if before.converged_at is None and st.converged_at is not None and st.step_started_at is not None:
            self.step_latency.labels(name, ns).observe(max(0.0, st.converged_at - st.step_started_at))
        if report.observations is not None:
            for zone, step in report.observations.applied.items():
                self.zone_applied.labels(name, ns, zone).set(-1 if step is None else step)

    def text(self) -> bytes:
        return generate_latest(self.registry)


def status_code(status: RolloutStatus) -> int:
    return {Phase.SUCCEEDED: 1, Phase.FAILED: 2}.get(status.phase, 0)
