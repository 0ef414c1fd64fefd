"""Spec and observation builders shared by the core's unit tests."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from federation.core import spec as specs
from federation.core.decide import decide, decide_or_ask
from federation.core.state import (
    Command,
    Decision,
    HookResult,
    MetricSample,
    Needs,
    Observations,
    Readiness,
    RolloutStatus,
)

BASE_CANARY: dict[str, Any] = {
    "apiVersion": "federation.io/v1alpha1",
    "kind": "FederatedCanary",
    "metadata": {"name": "frontend"},
    "spec": {
        "service": {"name": "frontend", "port": 8080},
        "primary": {"version": "v1", "zones": ["vms"]},
        "canary": {"version": "v2", "zones": ["eks", "onprem"]},
        "progressDeadlineSeconds": 600,
        "analysis": {
            "interval": "1m",
            "threshold": 2,
            "stepWeight": 20,
            "maxWeight": 60,
            "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}}],
        },
    },
}


def canary(analysis: dict[str, Any] | None = None, replace_analysis: bool = False, **spec: Any) -> specs.CanarySpec:
    doc = copy.deepcopy(BASE_CANARY)
    if analysis is not None:
        if replace_analysis:
            doc["spec"]["analysis"] = analysis
        else:
            doc["spec"]["analysis"].update(analysis)
            for k in [k for k, v in analysis.items() if v is None]:
                del doc["spec"]["analysis"][k]
    doc["spec"].update(spec)
    return specs.FederatedCanary.model_validate(doc).spec


def good_metrics(spec: specs.CanarySpec, value: float = 99.9) -> tuple[MetricSample, ...]:
    out = []
    for m in spec.analysis.metrics:
        out.append(MetricSample(m.name, None, value, requests=1000))
        for z in spec.canary.zones:
            out.append(MetricSample(m.name, z, value, requests=500))
    return tuple(out)


def observe(spec: specs.CanarySpec, status: RolloutStatus, *, applied: int | None = None,
            ready: bool = True, metrics: tuple[MetricSample, ...] | None = None,
            hooks: dict[str, bool] | None = None, canary_failed: dict[str, str] | None = None) -> Observations:
    zones = list(dict.fromkeys(spec.primary.zones + spec.canary.zones))
    step = status.step if applied is None else applied
    readiness = {z: Readiness(primary=100.0 if ready or z in spec.primary.zones else 0.0,
                              canary=100.0 if ready else 0.0,
                              canary_failed=(canary_failed or {}).get(z, "")) for z in zones}
    return Observations(
        spec=spec,
        applied={z: step for z in zones},
        readiness=readiness,
        metrics=good_metrics(spec) if metrics is None else metrics,
        hooks={k: HookResult(v, "" if v else "HTTP 403") for k, v in (hooks or {}).items()},
    )


class Driver:
    """Runs ticks with a fake clock; every zone applies each step at once unless told otherwise."""

    def __init__(self, spec: specs.CanarySpec, status: RolloutStatus | None = None, now: float = 1000.0) -> None:
        self.spec = spec
        self.status = status or RolloutStatus()
        self.now = now
        self.decisions: list[Decision] = []

    def tick(self, advance: float = 0.0, **obs: Any) -> Decision:
        self.now += advance
        d = decide(self.status, observe(self.spec, self.status, **obs), self.now)
        self.status = d.status
        self.decisions.append(d)
        return d

    def initialise(self) -> None:
        self.tick()  # commit step 1 (all to primary)
        self.tick()  # converged
        self.tick()  # Initialized

    def start_canary(self) -> None:
        """Start the rollout and walk to the first weight step: at 0% only pre-rollout hooks run."""
        self.tick()  # start: step at 0%
        self.tick()  # converged
        self.tick(60.0)  # idle iteration: first step
        self.tick()  # converged at the first step

    def run(self, ticks: int, advance: float = 60.0, **obs: Any) -> None:
        for _ in range(ticks):
            self.tick(advance, **obs)


def asks(spec: specs.CanarySpec, status: RolloutStatus, now: float, command: Command | None = None,
         answer: bool = True) -> Needs:
    """Everything a tick asks to observe (gates answered ``answer``, good metrics), in the order asked."""
    obs = dataclasses.replace(observe(spec, status), hooks={}, metrics=(), command=command, observed=frozenset())
    asked = Needs()
    for _ in range(20):
        out = decide_or_ask(status, obs, now)
        if isinstance(out, Decision):
            return asked
        answers = {h.name: HookResult(answer, "" if answer else "HTTP 403") for t in out.hooks
                   for h in spec.analysis.hooks(t)}
        obs = obs.adding(out, answers, good_metrics(spec) if out.metrics else None)
        asked = Needs(asked.metrics or out.metrics, asked.hooks + out.hooks)
    raise AssertionError("the tick kept asking")
