"""The hub's parts in memory, for tests and benchmarks of the worker and the hub service: every
zone and the mesh apply a step at once, metrics are good. No Git, no SSH, no Envoy. Each applied
step is recorded with its time, so a test can tell when a command took effect."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from federation import specfiles
from federation.core import spec as specs
from federation.core.state import MetricSample, SetWeights
from federation.demo import run as demo_run
from federation.hub.executor import StepResult
from federation.hub.parts import Parts
from federation.runtimes.routes import NoRoute

ROOT = Path(__file__).resolve().parents[1]


def fleet() -> specs.Fleet:
    """The demo's fleet (clusters/fleet.yaml): zones eks, onprem, vms."""
    return specfiles.load_one(ROOT / "clusters" / "fleet.yaml", specs.Fleet)


def canary(primary: tuple[str, list[str]] = ("v1", ["vms"]), to: tuple[str, list[str]] = ("v2", ["eks", "onprem"]),
           interval: str = "1m", threshold: int = 2) -> specs.FederatedCanary:
    doc = demo_run.canary_doc(demo_run.Pace.fast(), primary, to)
    doc["spec"]["analysis"].update({"interval": interval, "threshold": threshold, "stepWeight": 20, "maxWeight": 60,
                                    "stepWeightPromotion": 50})
    return specs.FederatedCanary.model_validate(doc)


async def until(check: Callable[[], Awaitable[bool]], timeout: float, what: str, interval: float = 0.01) -> None:
    """Poll ``check`` until true; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"{what}: not after {timeout:g}s")


class ZoneSeen:
    """A ``ZoneObservation``: the step applied, every version fully ready."""

    def __init__(self, zone: str, step: int | None) -> None:
        self.zone = zone
        self.step = step

    def applied_step(self) -> int | None:
        return self.step

    def ready_percent(self, service: str, version: str) -> float:
        return 100.0

    def failed(self, service: str, version: str) -> str:
        return ""

    def reasons(self) -> list[str]:
        return []


class GoodAnalyzer:
    """Metrics every check passes (success rate 99.9%, latency 120 ms), counted as it is asked."""

    def __init__(self) -> None:
        self.calls = 0
        self.templates: dict[str, str] = {}

    async def collect(self, spec: specs.CanarySpec, namespace: str, name: str | None = None) -> tuple[MetricSample, ...]:
        self.calls += 1
        out = []
        for m in spec.analysis.metrics:
            value = 99.9 if m.name == "request-success-rate" else 120.0
            out.append(MetricSample(m.name, None, value, requests=5000))
            out.extend(MetricSample(m.name, z, value, requests=1000) for z in spec.canary.zones)
        return tuple(out)


class MemoryZone:
    """A ``ZoneRuntime``'s observing side in memory (the memory executor applies steps)."""

    def __init__(self, name: str, applied: dict[str, int]) -> None:
        self.name = name
        self.applied = applied
        self.pull_request = False

    async def observe(self, canary: specs.FederatedCanary, step: int) -> ZoneSeen:
        return ZoneSeen(self.name, self.applied.get(canary.key))


class MemoryExecutor:
    """The executor's surface the worker uses, in memory: a step is live everywhere at once."""

    def __init__(self, applied: dict[str, int]) -> None:
        self.applied = applied
        self.steps = 0
        self.actions: list[tuple[float, str, SetWeights]] = []  # (time.monotonic(), rollout, action)

    async def advance(self, key: str) -> None:
        return None

    async def mesh_step(self, canary: specs.FederatedCanary, step: int) -> int | None:
        return self.applied.get(canary.key)

    async def apply_step(self, canary: specs.FederatedCanary, action: SetWeights) -> StepResult:
        self.applied[canary.key] = action.step
        self.steps += 1
        self.actions.append((time.monotonic(), canary.key, action))
        return StepResult({})


class MemoryParts(Parts):
    """The hub's parts in memory; ``applied`` is the step every zone and the mesh run per rollout."""

    def __init__(self, fleet: specs.Fleet, canaries: list[specs.FederatedCanary]) -> None:
        self.applied: dict[str, int] = {}
        super().__init__(fleet, {}, {z: MemoryZone(z, self.applied) for z in fleet.zone_names},  # type: ignore[misc]
                         NoRoute(), MemoryExecutor(self.applied), GoodAnalyzer())  # type: ignore[arg-type]
        self.set(canaries)

    def set(self, canaries: list[specs.FederatedCanary]) -> None:
        """What discovery finds in the (imaginary) mesh repo from now on."""
        self._canaries = {c.key: ("canaries/" + c.metadata.name + ".yaml", c, "") for c in canaries}

    @property
    def steps(self) -> int:
        return self.executor.steps  # type: ignore[attr-defined]

    @property
    def actions(self) -> list[tuple[float, str, SetWeights]]:
        return self.executor.actions  # type: ignore[attr-defined]

    async def sync(self, names: list[str] | None = None) -> None:
        return None

    async def canaries(self, running: object = ()) -> dict[str, tuple[str, specs.FederatedCanary | None, str]]:
        return self._canaries
