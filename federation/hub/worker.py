"""One rollout's worker: observe → ``core.decide`` → execute → persist, one tick at a time.

Observation is concurrent (every zone's runtime, the mesh route); webhook gates and metrics are
observed when the decision asks for them (``core.decide.decide_or_ask``). The status is saved
only after the decision's actions ran; a crash in between repeats the decision, and the
executor's per-step idempotency (a commit carrying the same rollout and step is found, not
written again) keeps that harmless.
Callers: the hub service and the demo.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from federation.core import decide as core
from federation.core import recovery
from federation.core.errors import FederationError
from federation.core.spec import FederatedCanary, WebhookType
from federation.core.state import (
    CallHooks,
    Command,
    Decision,
    Emit,
    HookResult,
    MetricSample,
    Observations,
    Phase,
    Readiness,
    RolloutStatus,
    SetWeights,
)
from federation.hub import recovery as git_steps
from federation.hub.parts import Parts
from federation.hub.store import Store
from federation.notify import alerts, webhooks
from federation.runtimes.ports import ZoneObservation
from federation.runtimes.routes import MESH

log = logging.getLogger("federation.hub.worker")


@dataclass
class TickReport:
    """What one tick saw and did, for live output and tests."""

    key: str
    now: float
    status: RolloutStatus
    decision: Decision
    observations: Observations | None
    zones: dict[str, ZoneObservation] = field(default_factory=dict)
    commits: dict[str, str] = field(default_factory=dict)
    error: str = ""


Listener = Callable[[TickReport], Awaitable[None] | None]


class RolloutWorker:
    def __init__(self, key: str, parts: Parts, store: Store,
                 clock: Callable[[], float] = time.time, listener: Listener | None = None) -> None:
        self.key = key
        self.parts = parts
        self.store = store
        self.clock = clock
        self.listener = listener
        self._resynced = False
        self._saved = False
        self._last_error = ""

    async def _hooks(self, canary: FederatedCanary, types: tuple[WebhookType, ...],
                     status: RolloutStatus) -> dict[str, HookResult]:
        hooks = [h for t in types for h in canary.spec.analysis.hooks(t)]
        if not hooks:
            return {}
        return await webhooks.call_all(hooks, canary.metadata.name, canary.metadata.namespace, status.phase.value,
                                       checksum=canary.spec.checksum, policy=self.parts.fleet.outbound_policy())

    async def _zones(self, canary: FederatedCanary, zones: list[str], step: int) -> tuple[Any, Any]:
        """Zones and the mesh route's step in one gather; one zone failing leaves the zones unobserved."""
        failed: BaseException | None = None
        try:
            await self.parts.executor.advance(canary.key)  # a step waiting for merges moves on first
        except Exception as exc:
            failed = exc
        observing = [] if failed else [self.parts.zones[z].observe(canary, step) for z in zones]
        *seen, mesh = await asyncio.gather(*observing, self.parts.executor.mesh_step(canary, step), return_exceptions=True)
        failed = failed or next((x for x in seen if isinstance(x, BaseException)), None)
        return failed or dict(zip(zones, seen, strict=True)), mesh

    async def _metrics(self, canary: FederatedCanary) -> tuple[MetricSample, ...]:
        spec = canary.spec
        try:
            return await self.parts.analyzer.collect(spec, canary.metadata.namespace, name=canary.metadata.name)
        except Exception as exc:  # any failure to read metrics is no data, judged as such by the core
            reason = f"metrics unavailable: {exc}"
            return tuple(MetricSample(x.name, None, None, reason) for x in spec.analysis.metrics)

    async def observe(self, canary: FederatedCanary, status: RolloutStatus, now: float,
                      command: Command | None = None) -> tuple[Observations, dict[str, ZoneObservation]]:
        """What every tick reads: zones and the mesh route. Gates and metrics are observed when the
        decision asks for them (``decide``)."""
        spec = canary.spec
        zones = list(dict.fromkeys(spec.primary.zones + spec.canary.zones))
        zone_statuses, mesh_step = await self._zones(canary, zones, status.step)
        if isinstance(zone_statuses, BaseException):
            log.warning("%s: zone observation failed: %s", self.key, zone_statuses)
            zone_statuses = {}
        if isinstance(mesh_step, BaseException):
            mesh_step = None
        applied: dict[str, int | None] = {z: s.applied_step() for z, s in zone_statuses.items()}
        for z in zones:
            applied.setdefault(z, None)
        applied[MESH] = mesh_step
        readiness = {}
        for z, zs in zone_statuses.items():
            readiness[z] = Readiness(
                primary=zs.ready_percent(spec.service.name, spec.primary.version) if z in spec.primary.zones else None,
                canary=zs.ready_percent(spec.service.name, spec.canary.version) if z in spec.canary.zones else None,
                canary_failed=zs.failed(spec.service.name, spec.canary.version) if z in spec.canary.zones else "",
            )
        obs = Observations(spec=spec, fleet=self.parts.fleet, applied=applied, readiness=readiness,
                           command=command, observed=frozenset())
        return obs, zone_statuses

    async def decide(self, canary: FederatedCanary, status: RolloutStatus, obs: Observations,
                     now: float) -> tuple[Decision, Observations]:
        """``core.decide`` asks for the gates and metrics it reaches; each is observed once, then the
        (pure) tick runs again with it — what the decision reads is what the hub observed."""
        for _ in range(len(WebhookType) + 2):
            out = core.decide_or_ask(status, obs, now)
            if isinstance(out, Decision):
                return out, obs
            hooks, metrics = await asyncio.gather(self._hooks(canary, out.hooks, status),
                                                  self._metrics(canary) if out.metrics else _nothing())
            obs = obs.adding(out, hooks, metrics if out.metrics else None)
        raise RuntimeError(f"{self.key}: the decision kept asking for more observations")  # a bug in the core

    async def execute(self, canary: FederatedCanary, decision: Decision) -> dict[str, str]:
        commits: dict[str, str] = {}
        spec = canary.spec
        for action in decision.actions:
            if isinstance(action, SetWeights):
                result = await self.parts.executor.apply_step(canary, action)
                commits.update(result.commits)
            elif isinstance(action, Emit):
                level = {"info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}[action.severity]
                log.log(level, "%s: %s: %s", self.key, action.reason, action.message)
                if action.alert:  # not for a failing webhook with muteAlert
                    await alerts.notify(self.parts.fleet.spec.alert_providers, canary, decision.status.phase.value,
                                        action.severity, action.reason, action.message,
                                        policy=self.parts.fleet.outbound_policy())
                event_hooks = spec.analysis.hooks(WebhookType.EVENT)
                if event_hooks:
                    await webhooks.send_event(event_hooks, canary.metadata.name, canary.metadata.namespace,
                                              decision.status.phase.value, action.severity, action.message,
                                              policy=self.parts.fleet.outbound_policy())
            elif isinstance(action, CallHooks):
                results = await self._hooks(canary, (action.type,), decision.status)
                for name, r in results.items():
                    if not r.ok:
                        log.warning("%s: %s hook %s failed: %s", self.key, action.type.value, name, r.message)
        return commits

    async def resync(self, canary: FederatedCanary, status: RolloutStatus, now: float) -> RolloutStatus:
        """A (re)started worker: Git can be ahead of the store when a hub died mid-step (this one, or
        the replica that held the rollout before); the current step is applied once more."""
        pull_request = {z.name for z in self.parts.fleet.spec.zones if z.git.pull_request}
        found = await git_steps.recorded_steps(self.parts.repos, pull_request, self.key)
        r = recovery.recover(canary.spec, status, found, now)
        if r.adopted is not None:
            log.warning("%s: Git holds step %d (%s) beyond the stored step %d: resuming from Git",
                        self.key, r.adopted.step, r.adopted.stage.value, status.step)
            await self.store.save(self.key, r.status)
        if r.reapply is not None:
            spec = canary.spec
            message = r.reapply.message(spec.service.name, spec.canary.version, "applied again after a hub restart")
            await self.parts.executor.apply_record(canary, r.reapply, message)
        return r.status

    async def tick(self, canary: FederatedCanary, command: Command | None = None) -> TickReport:
        now = self.clock()
        status = await self.store.load(self.key)
        if not self._resynced:
            try:
                status = await self.resync(canary, status, now)
            except FederationError as exc:
                log.error("%s: applying step %d again failed, will retry: %s", self.key, status.step, exc)
                report = TickReport(self.key, now, status, Decision(status), None, error=str(exc))
                await self._notify(report)
                return report
        self._resynced = True
        if status.phase is Phase.FINALISING and not core.same_target(canary.spec, status.target):
            # A new release arrived while the last one finalises: finish that one with its own spec
            # (its versions and zones: the new version is deployed nowhere yet, and waiting for it
            # would never end); the new release starts at the next tick, from Succeeded.
            old = core.spec_for_target(canary.spec, status.target)
            if old is not None:
                canary = canary.model_copy(update={"spec": old})
        obs, zones = await self.observe(canary, status, now, command)
        decision, obs = await self.decide(canary, status, obs, now)
        report = TickReport(self.key, now, status, decision, obs, zones)
        try:
            report.commits = await self.execute(canary, decision)
        except FederationError as exc:
            # Nothing is saved, and the next tick first resyncs from Git: a step committed to some
            # repos before the failure is adopted and completed, never decided anew — the inputs
            # may have changed meanwhile (a new release, a command) and the same step number would
            # then carry other values (refused by the executor's idempotency check, forever).
            self._resynced = False
            report.error = str(exc)
            # Once per distinct error (the next ticks retry the same step): the hub's reasons say
            # the rest (which zone waits, and why) in status and watch.
            log.log(logging.ERROR if report.error != self._last_error else logging.DEBUG,
                    "%s: executing step failed, will retry: %s", self.key, exc)
            self._last_error = report.error
            await self._notify(report)
            return report
        try:
            # Saved when it changed (most ticks of a rollout waiting for its next analysis change
            # nothing), and once per worker so every rollout it ran has a stored status.
            if decision.status != status or not self._saved:
                await self.store.save(self.key, decision.status)
                self._saved = True
        except FederationError as exc:
            # Another writer moved the stored status (this replica lost the rollout), or the store is
            # down: the next tick loads again and decides from what is there.
            report.error = f"status not saved: {exc}"
            log.error("%s: %s", self.key, report.error)
        if not report.error and self._last_error:
            log.info("%s: step applied after failing: %s", self.key, self._last_error)
            self._last_error = ""
        await self._notify(report)
        return report

    async def _notify(self, report: TickReport) -> None:
        if self.listener is not None:
            r = self.listener(report)
            if asyncio.iscoroutine(r):
                await r


async def _nothing() -> tuple[MetricSample, ...]:
    return ()

