"""A hub on in-memory adapters (every step applies at once, every zone reports good metrics): the
real ``Hub``, worker, core and API, for tests and benchmarks of the hub's own behaviour. Each
applied step is recorded with its time, so a test can tell when a command took effect."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from federation import specfiles
from federation.core import spec as specs
from federation.core.state import MetricSample, SetWeights
from federation.demo import run as demo_run
from federation.hub.fleet import StepResult

ROOT = Path(__file__).resolve().parents[1]


def fleet() -> specs.Fleet:
    return specfiles.load_one(ROOT / "clusters" / "fleet.yaml", specs.Fleet)


def canary(primary: tuple[str, list[str]] = ("v1", ["vms"]), to: tuple[str, list[str]] = ("v2", ["eks", "onprem"]),
           interval: str = "1m", threshold: int = 2) -> specs.FederatedCanary:
    doc = demo_run.canary_doc(demo_run.Pace.fast(), primary, to)
    doc["spec"]["analysis"].update({"interval": interval, "threshold": threshold, "stepWeight": 20, "maxWeight": 60,
                                    "stepWeightPromotion": 50})
    return specs.FederatedCanary.model_validate(doc)


class _Zone:
    def __init__(self, step: int | None) -> None:
        self.step = step

    def applied_step(self) -> int | None:
        return self.step

    def ready_percent(self, service: str, version: str) -> float:
        return 100.0

    def failed(self, service: str, version: str) -> str:
        return ""


class _Analyzer:
    async def collect(self, spec: specs.CanarySpec, namespace: str) -> tuple[MetricSample, ...]:
        out = []
        for m in spec.analysis.metrics:
            value = 99.9 if m.name == "request-success-rate" else 120.0
            out.append(MetricSample(m.name, None, value, requests=5000))
            out.extend(MetricSample(m.name, z, value, requests=1000) for z in spec.canary.zones)
        return tuple(out)


class MemoryAdapters:
    """What the worker and the hub use of ``FleetAdapters``, in memory."""

    def __init__(self, fleet: specs.Fleet, canaries: list[specs.FederatedCanary]) -> None:
        self.fleet = fleet
        self.analyzer = _Analyzer()
        self.set(canaries)
        self.applied: dict[str, int] = {}
        self.actions: list[tuple[float, str, SetWeights]] = []  # (time.monotonic(), rollout, action)

    def set(self, canaries: list[specs.FederatedCanary]) -> None:
        self._canaries = {c.key: ("canaries/" + c.metadata.name + ".yaml", c, "") for c in canaries}

    async def sync(self, names: list[str] | None = None) -> None:
        return None

    def canaries(self) -> dict[str, tuple[str, specs.FederatedCanary | None, str]]:
        return self._canaries

    async def observe_zones(self, zones: list[str], canary: specs.FederatedCanary, step: int = 0) -> dict[str, Any]:
        got = self.applied.get(canary.key)
        return {z: _Zone(got) for z in zones}

    async def mesh_step(self, canary: specs.FederatedCanary, step: int) -> int | None:
        return self.applied.get(canary.key)

    async def apply_step(self, canary: specs.FederatedCanary, action: SetWeights) -> StepResult:
        self.applied[canary.key] = action.step
        self.actions.append((time.monotonic(), canary.key, action))
        return StepResult({})

    def last_step(self, rollout: str) -> None:
        return None

    async def close(self) -> None:
        return None
