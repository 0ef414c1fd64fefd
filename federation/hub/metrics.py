"""The hub's own /metrics (prometheus_client): Flagger's series, then ours.

Flagger's series carry Flagger's names, labels and meanings, so an existing Flagger dashboard and
its alerts read a federated rollout unchanged: ``flagger_info{version, mesh_provider}``,
``flagger_canary_total{namespace}``, ``flagger_canary_status{name, namespace}`` (Flagger's
mapping: 0 while Progressing, 2 once Failed, 1 otherwise — its docs say "0 running, 1 successful,
2 failed"), ``flagger_canary_weight{workload, namespace}`` (``<service>-primary`` and
``<service>``), ``flagger_canary_duration_seconds{name, namespace}`` (seconds spent in one
analysis tick), ``flagger_canary_metric_analysis{name, namespace, metric}`` (last global value),
``flagger_canary_successes_total`` / ``flagger_canary_failures_total`` (name, namespace,
deployment_strategy, analysis_status). As in Flagger, ``name`` is the workload (our service).

Ours (``federation_*``) keep the rollout's name and, per zone, a ``zone`` label: subset weights,
metric values per zone (``zone="global"`` for the aggregate) and their thresholds, failed checks,
step latency (commit to converged everywhere), zone reachability, the timestamps the alert rules
read (``deploy/prometheus/``), and this replica's Leases. Callers: the hub service after each tick
and each discovery.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter as Tally
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

import federation
from federation.core.spec import CanarySpec, FederatedCanary, Fleet
from federation.core.state import Phase, RolloutStatus, SetWeights
from federation.hub.labels import flagger_canary_percent, flagger_status_code, status_code, strategy
from federation.hub.worker import TickReport

GLOBAL = "global"  # the zone label of an aggregate figure (a reserved zone name)
# Flagger's histogram buckets (client_golang's DefBuckets), so its dashboards' quantiles match.
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class HubMetrics:
    def __init__(self, fleet: Fleet | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        rollout = ["name", "namespace"]
        # -- Flagger's ----------------------------------------------------------------------
        self.f_info = Gauge("flagger_info", "Flagger version and mesh provider information",
                            ["version", "mesh_provider"], registry=r)
        self.f_total = Gauge("flagger_canary_total", "Total number of canary object", ["namespace"], registry=r)
        self.f_status = Gauge("flagger_canary_status", "Last canary analysis result", rollout, registry=r)
        self.f_weight = Gauge("flagger_canary_weight", "The virtual service destination weight current value",
                              ["workload", "namespace"], registry=r)
        self.f_duration = Histogram("flagger_canary_duration_seconds", "Seconds spent performing canary analysis.",
                                    rollout, buckets=DEFAULT_BUCKETS, registry=r)
        self.f_analysis = Gauge("flagger_canary_metric_analysis", "Last canary analysis result per metric",
                                [*rollout, "metric"], registry=r)
        outcome = [*rollout, "deployment_strategy", "analysis_status"]
        self.f_successes = Counter("flagger_canary_successes", "Total number of canary successes", outcome, registry=r)
        self.f_failures = Counter("flagger_canary_failures", "Total number of canary failures", outcome, registry=r)
        # -- ours ---------------------------------------------------------------------------
        self.status = Gauge("federation_canary_status", "Rollout status: 0 running, 1 successful, 2 failed",
                            rollout, registry=r)
        self.phase = Gauge("federation_canary_phase", "1 for the rollout's current phase, 0 for the others",
                           [*rollout, "phase"], registry=r)
        self.weight = Gauge("federation_canary_weight", "Canary weight in percent", ["workload", "namespace"], registry=r)
        self.subset = Gauge("federation_subset_weight", "Weight of one (zone, version) subset in percent",
                            [*rollout, "zone", "version"], registry=r)
        self.duration = Histogram("federation_canary_duration_seconds", "Duration of one analysis tick",
                                  rollout, registry=r)
        self.successes = Counter("federation_canary_successes", "Rollouts promoted", rollout, registry=r)
        self.failures = Counter("federation_canary_failures", "Rollouts rolled back", rollout, registry=r)
        self.failed_checks = Gauge("federation_canary_failed_checks", "Failed checks in the current run",
                                   rollout, registry=r)
        self.check_failures = Counter("federation_canary_check_failures", "Checks judged failed (fail or nodata)",
                                      [*rollout, "metric", "zone"], registry=r)
        self.metric_value = Gauge("federation_canary_metric_value",
                                  "Last value of an analysis metric per zone (zone=\"global\": the aggregate)",
                                  [*rollout, "metric", "zone"], registry=r)
        self.threshold = Gauge("federation_canary_metric_threshold", "A metric's accepted bound (bound: min or max)",
                               [*rollout, "metric", "bound"], registry=r)
        self.step = Gauge("federation_canary_step", "Current step number", rollout, registry=r)
        self.step_latency = Histogram("federation_step_latency_seconds", "From a step's commit to every zone applying it",
                                      rollout, buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
                                      registry=r)
        self.zone_applied = Gauge("federation_zone_applied_step", "Last step a zone reported applied (-1 unknown)",
                                  [*rollout, "zone"], registry=r)
        self.zone_up = Gauge("federation_zone_up", "0 when the zone gave no applied step on the last tick and said why (unreachable hosts, API errors)",
                             [*rollout, "zone"], registry=r)
        self.zone_problems = Gauge("federation_zone_problems",
                                   "What stands in a zone's way on the last tick (unreachable hosts, agents, Flux)",
                                   [*rollout, "zone"], registry=r)
        self.last_tick = Gauge("federation_canary_last_tick_timestamp_seconds", "When the rollout's last tick ran",
                               rollout, registry=r)
        self.held_since = Gauge("federation_canary_held_since_timestamp_seconds",
                                "Since when the rollout waits for its step to converge or be ready (0: not held)",
                                rollout, registry=r)
        self.deadline = Gauge("federation_canary_progress_deadline_seconds", "The rollout's progressDeadlineSeconds",
                              rollout, registry=r)
        self.tick_errors = Counter("federation_canary_tick_errors", "Ticks that failed", rollout, registry=r)
        self.discovered = Gauge("federation_hub_rollouts_discovered", "Rollouts found in the mesh repo", registry=r)
        self.owned = Gauge("federation_hub_rollouts_owned", "Rollouts this replica runs", registry=r)
        self.sharded = Gauge("federation_hub_sharded", "1 when this replica runs only the rollouts whose Lease it holds",
                             registry=r)
        self.leases = Gauge("federation_hub_leases_held", "Per-rollout Leases this replica holds", registry=r)
        self.last_discovery = Gauge("federation_hub_last_discovery_timestamp_seconds",
                                    "When this replica last read the mesh repo and renewed its Leases", registry=r)
        self.discovery_errors = Counter("federation_hub_discovery_errors",
                                        "Discoveries that failed (mesh repo, or the Lease API)", registry=r)
        # rollout -> its series: (metric, label values) -> the child (labels() checks and locks per call)
        self._series: dict[str, dict[tuple[Any, tuple[str, ...]], Any]] = {}
        self._set_for: dict[str, tuple[Any, RolloutStatus, Any]] = {}  # rollout -> (spec, status, zones) shown
        if fleet is not None:
            self.f_info.labels(federation.__version__, fleet.spec.mesh.provider.value).set(1)

        self.invalid = Gauge("federation_canary_invalid", "1 while the rollout's file in the mesh repo is invalid "
                             "(it runs its last valid spec)", ["name", "namespace"], registry=r)
        self.problems = Gauge("federation_spec_problems", "Files in the mesh repo that are not valid rollouts", registry=r)

    def discovery(self, canaries: Iterable[str], owned: Iterable[str], sharded: bool, now: float,
                  renewed: bool = True) -> None:
        """After each discovery: canaries per namespace (Flagger's total), and this replica's share.
        ``renewed`` False: the Lease API did not answer; counted as a failed discovery (alerts)."""
        keys = sorted(canaries)
        per_ns = Tally(k.split("/", 1)[0] for k in keys)
        for ns in {s.labels["namespace"] for fam in self.f_total.collect() for s in fam.samples} - set(per_ns):
            self.f_total.labels(ns).set(0)
        for ns, n in per_ns.items():
            self.f_total.labels(ns).set(n)
        mine = set(owned)  # a set: 'not in' below runs once per series key (a list was quadratic)
        self.discovered.set(len(keys))
        self.owned.set(len(mine))
        self.sharded.set(1 if sharded else 0)
        self.leases.set(len(mine) if sharded else 0)
        if renewed:
            self.last_discovery.set(now)
        else:
            self.discovery_errors.inc()
        for key in [k for k in self._series if k not in mine]:
            self.forget(key)

    def discovery_failed(self) -> None:
        self.discovery_errors.inc()

    def spec_problems(self, running: list[str], invalid: dict[str, str], problems: int) -> None:
        """Which running rollouts run their last valid spec (their file turned invalid), and how
        many files in the mesh repo are not valid rollouts."""
        for key in running:
            ns, name = key.split("/", 1)
            self._at(self.invalid, key, name, ns).set(1 if key in invalid else 0)
        self.problems.set(problems)

    def forget(self, key: str) -> None:
        """Drop a rollout's series: removed, or run by another replica now (its figures are there)."""
        self._set_for.pop(key, None)
        for metric, values in self._series.pop(key, {}):
            with contextlib.suppress(KeyError):
                metric.remove(*values)

    def _at(self, metric: Any, key: str, *values: str) -> Any:
        """``metric.labels(*values)``, remembered as one of rollout ``key``'s series."""
        series = self._series.setdefault(key, {})
        if (child := series.get((metric, values))) is None:
            child = series[(metric, values)] = metric.labels(*values)
        return child

    def observe(self, report: TickReport, seconds: float, canary: FederatedCanary | None = None) -> None:
        key = report.key
        ns, name = key.split("/", 1)
        spec = canary.spec if canary is not None else report.observations.spec if report.observations else None
        workload = spec.service.name if spec is not None else name
        before, st = report.status, report.decision.status
        self._at(self.last_tick, key, name, ns).set(report.now)
        tick_errors = self._at(self.tick_errors, key, name, ns)  # 0 before the first: rate() has a series
        if report.error:
            tick_errors.inc()
        set_for = self._set_for.get(key)  # what follows from the status and spec: set when they change
        self._at(self.f_duration, key, workload, ns).observe(seconds)
        self._at(self.duration, key, name, ns).observe(seconds)
        if set_for is None or set_for[0] is not spec or set_for[1] != st:
            self._at(self.f_status, key, workload, ns).set(flagger_status_code(st))  # Flagger's
            canary_pct = flagger_canary_percent(st)
            self._at(self.f_weight, key, f"{workload}-primary", ns).set(100 - canary_pct)
            self._at(self.f_weight, key, workload, ns).set(canary_pct)
            self._at(self.status, key, name, ns).set(status_code(st))  # ours
            if set_for is None or set_for[1].phase is not st.phase:
                for p in Phase:
                    self._at(self.phase, key, name, ns, p.value).set(1 if p is st.phase else 0)
            self._at(self.weight, key, name, ns).set(st.canary_weight / 100)
            self._at(self.step, key, name, ns).set(st.step)
            self._at(self.failed_checks, key, name, ns).set(st.failed_checks)
            self._at(self.held_since, key, name, ns).set(st.held_since or 0)
        if spec is not None and (set_for is None or set_for[0] is not spec):
            self._at(self.deadline, key, name, ns).set(spec.progress_deadline_seconds)
            self._thresholds(key, name, ns, spec)
            for counter in (self.f_successes, self.f_failures):  # 0 before the first: increase() has a series
                self._at(counter, key, workload, ns, strategy(spec), "skipped" if spec.skip_analysis else "completed")
        if st.phase != before.phase:
            outcome = None
            if st.phase is Phase.SUCCEEDED:
                self._at(self.successes, key, name, ns).inc()
                outcome = self.f_successes
            elif st.phase is Phase.FAILED:
                self._at(self.failures, key, name, ns).inc()
                outcome = self.f_failures
            if outcome is not None and spec is not None:
                self._at(outcome, key, workload, ns, strategy(spec), "skipped" if spec.skip_analysis else "completed").inc()
        for a in report.decision.actions:
            if isinstance(a, SetWeights):
                for s, w in a.weights:
                    self._at(self.subset, key, name, ns, s.zone, s.version).set(w / 100)
        if before.converged_at is None and st.converged_at is not None and st.step_started_at is not None:
            self._at(self.step_latency, key, name, ns).observe(max(0.0, st.converged_at - st.step_started_at))
        applied = tuple(report.observations.applied.items()) if report.observations is not None else ()
        zones = tuple((zone, seen.applied_step(), tuple(seen.reasons())) for zone, seen in report.zones.items())
        if set_for is None or set_for[2] != (applied, zones):
            for zone, step in applied:
                self._at(self.zone_applied, key, name, ns, zone).set(-1 if step is None else step)
            for zone, step, problems in zones:
                self._at(self.zone_up, key, name, ns, zone).set(0 if step is None and problems else 1)
                self._at(self.zone_problems, key, name, ns, zone).set(len(problems))
        self._set_for[key] = (spec, st, (applied, zones))
        self._analysis(key, name, workload, ns, report)

    def _analysis(self, key: str, name: str, workload: str, ns: str, report: TickReport) -> None:
        """The values this tick read, and the checks it judged failed (a new ``last_checks``)."""
        st = report.decision.status
        if report.observations is not None:
            for m in report.observations.metrics:
                if m.value is None or math.isnan(m.value):
                    continue
                self._at(self.metric_value, key, name, ns, m.metric, m.zone or GLOBAL).set(m.value)
                if m.zone is None:
                    self._at(self.f_analysis, key, workload, ns, m.metric).set(m.value)
        if st.last_checks and st.last_checks is not report.status.last_checks:
            for c in st.last_checks:  # every check's series, at 0 until it fails
                failures = self._at(self.check_failures, key, name, ns, c.metric, c.zone or GLOBAL)
                if c.outcome in ("fail", "nodata"):
                    failures.inc()

    def _thresholds(self, key: str, name: str, ns: str, spec: CanarySpec) -> None:
        for m in spec.analysis.metrics:
            low, high = m.bounds
            for bound, v in (("min", low), ("max", high)):
                if v is not None:
                    self._at(self.threshold, key, name, ns, m.name, bound).set(v)

    def text(self) -> bytes:
        return generate_latest(self.registry)
