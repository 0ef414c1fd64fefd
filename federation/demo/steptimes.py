"""How long a step takes to land in the demo's Kubernetes zones: from the hub's commit to the zone
repo, to Flux's applied revision (the Kustomization's ``lastAppliedRevision`` holding that commit),
to the Deployments ready (every one the hub rendered in the zone: ``observedGeneration`` current,
all replicas updated and available), to the route live (the zone's mesh routing the applied split
to ready pods).

``Timed`` wraps a zone's runtime and notes each step commit as it returns (a monotonic clock);
``StepClock.track`` runs in the controllers' pass after Flux, the kubelet and the mesh, and reads
the API server as the hub would. Figures only: nothing here decides anything.
Callers: ``demo.run``, ``demo.kubezones``.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from federation.core import spec as specs
from federation.core.steps import StepRecord
from federation.demo.fluxlocal import KUSTOMIZE
from federation.demo.kubeapi import LocalKube
from federation.runtimes.ports import ZoneObservation, ZoneRuntime


@dataclass
class StepTiming:
    zone: str
    rollout: str
    step: int
    sha: str
    committed: float  # monotonic seconds
    applied: float | None = None
    ready: float | None = None
    live: float | None = None

    def since(self, t: float | None) -> float | None:
        return None if t is None else t - self.committed


@dataclass
class StepClock:
    kube: LocalKube
    clock: Callable[[], float] = time.monotonic
    timings: list[StepTiming] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def committed(self, zone: str, record: StepRecord, sha: str) -> None:
        with self._lock:
            self.timings.append(StepTiming(zone, record.rollout, record.step, sha, self.clock()))

    def pending(self, zone: str) -> list[StepTiming]:
        with self._lock:
            return [t for t in self.timings if t.zone == zone and t.live is None]

    def track(self, zone: str, namespace: str, applied_contains: Callable[[str, str], bool],
              routed: Callable[[], bool], flux_namespace: str = "flux-system") -> None:
        """One look at ``zone`` after its controllers' pass: marks what has been applied, what is
        ready and what is live. ``applied_contains(revision, sha)``: Git ancestry; ``routed()``:
        whether the zone's mesh routes its applied split to ready pods."""
        waiting = self.pending(zone)
        if not waiting:
            return
        now = self.clock()
        r = self.kube.request("GET", self.kube.path(KUSTOMIZE, "Kustomization", flux_namespace, zone))
        revision = ((r.json().get("status") or {}).get("lastAppliedRevision") or "") if r.status_code == 200 else ""
        sha = revision.rsplit(":", 1)[-1] if revision else ""
        for t in waiting:
            if t.applied is None and sha and applied_contains(sha, t.sha):
                t.applied = now
        if not any(t.applied is not None and t.ready is None for t in waiting):
            return
        if self._deployments_ready(namespace):
            for t in waiting:
                if t.applied is not None and t.ready is None:
                    t.ready = now
        if routed():
            for t in waiting:
                if t.ready is not None:
                    t.live = now

    def _deployments_ready(self, namespace: str) -> bool:
        r = self.kube.request("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments",
                              params={"labelSelector": "app.kubernetes.io/managed-by=federation"})
        if r.status_code != 200:
            return False
        for d in r.json().get("items") or []:
            want = int((d.get("spec") or {}).get("replicas", 1))
            st = d.get("status") or {}
            if int(st.get("observedGeneration") or 0) < int(d["metadata"].get("generation") or 0):
                return False
            if min(int(st.get("updatedReplicas") or 0), int(st.get("availableReplicas") or 0)) < want:
                return False
        return True

    def of(self, rollout_steps: set[tuple[str, int]] | None = None) -> list[StepTiming]:
        with self._lock:
            return [t for t in self.timings if rollout_steps is None or (t.rollout, t.step) in rollout_steps]


def summary(timings: list[StepTiming]) -> dict[str, Any]:
    """Median and max seconds from commit to applied, ready and live over ``timings``."""
    out: dict[str, Any] = {"steps": len(timings)}
    for stage in ("applied", "ready", "live"):
        values = [v for v in (t.since(getattr(t, stage)) for t in timings) if v is not None]
        out[stage] = (statistics.median(values), max(values), len(values)) if values else None
    return out


class Timed:
    """A zone's runtime whose step commits ``StepClock`` notes; everything else is the zone's."""

    def __init__(self, inner: ZoneRuntime, clock: StepClock) -> None:
        self.inner = inner
        self.clock = clock
        self.name = inner.name
        self.repo = inner.repo
        self.pull_request = inner.pull_request

    async def commit(self, canary: specs.FederatedCanary, record: StepRecord, message: str,
                     branch: str | None = None) -> str | None:
        sha = await self.inner.commit(canary, record, message, branch)
        if sha is not None:
            self.clock.committed(self.name, record, sha)
        return sha

    async def converge(self, step: int) -> None:
        await self.inner.converge(step)

    async def observe(self, canary: specs.FederatedCanary, step: int) -> ZoneObservation:
        return await self.inner.observe(canary, step)
