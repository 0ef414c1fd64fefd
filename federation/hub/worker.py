"""One rollout's worker: observe → ``core.decide`` → execute → persist, one tick at a time.

Observation is concurrent (Git, every zone's agents, the edge, metrics, webhook gates) and asks the
core what it needs (``core.decide.needs``). The status is saved only after the decision's actions
ran; a crash in between repeats the decision, and the executor's per-step idempotency (a commit
carrying the same rollout and step is found, not written again) keeps that harmless.
Callers: the hub service and the demo.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from federation.core import decide as core
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
from federation.core.steps import RolloutTarget
from federation.hub.fleet import MESH, FleetAdapters
from federation.hub.store import Store
from federation.notify import alerts, webhooks
from federation.runtimes.vm import ZoneStatus

log = logging.getLogger("federation.hub.worker")


@dataclass
class TickReport:
    """What one tick saw and did, for live output and tests."""

    key: str
    now: float
    status: RolloutStatus
    decision: Decision
    observations: Observations | None
    zones: dict[str, ZoneStatus] = field(default_factory=dict)
    commits: dict[str, str] = field(default_factory=dict)
    error: str = ""


Listener = Callable[[TickReport], Awaitable[None] | None]


class RolloutWorker:
    def __init__(self, key: str, adapters: FleetAdapters, store: Store,
                 clock: Callable[[], float] = time.time, listener: Listener | None = None) -> None:
        self.key = key
        self.adapters = adapters
        self.store = store
        self.clock = clock
        self.listener = listener
        self._resynced = False
        self._last_error = ""

    async def _hooks(self, canary: FederatedCanary, types: tuple[WebhookType, ...],
                     status: RolloutStatus) -> dict[str, HookResult]:
        hooks = [h for t in types for h in canary.spec.analysis.hooks(t)]
        if not hooks:
            return {}
        return await webhooks.call_all(hooks, canary.metadata.name, canary.metadata.namespace, status.phase.value,
                                       checksum=canary.spec.checksum)

    async def observe(self, canary: FederatedCanary, status: RolloutStatus, now: float,
                      command: Command | None = None) -> tuple[Observations, dict[str, ZoneStatus]]:
        spec = canary.spec
        needs = core.needs(spec, status, now)
        zones = list(dict.fromkeys(spec.primary.zones + spec.canary.zones))
        zone_task = self.adapters.observe_zones(zones, canary, status.step)
        mesh_task = self.adapters.mesh_step(canary, status.step)
        metrics_task = self.adapters.analyzer.collect(spec, canary.metadata.namespace) if needs.metrics else None
        hooks_task = self._hooks(canary, needs.hooks, status)
        gathered = await asyncio.gather(zone_task, mesh_task, hooks_task,
                                        *([metrics_task] if metrics_task else []), return_exceptions=True)
        zone_statuses, mesh_step, hook_results = gathered[0], gathered[1], gathered[2]
        metrics: tuple[MetricSample, ...] = ()
        if metrics_task is not None:
            m = gathered[3]
            if isinstance(m, BaseException):
                reason = f"metrics unavailable: {m}"
                metrics = tuple(MetricSample(x.name, None, None, reason) for x in spec.analysis.metrics)
            else:
                metrics = m  # type: ignore[assignment]
        if isinstance(zone_statuses, BaseException):
            log.warning("%s: zone observation failed: %s", self.key, zone_statuses)
            zone_statuses = {}
        if isinstance(mesh_step, BaseException):
            mesh_step = None
        if isinstance(hook_results, BaseException):
            hook_results = {}
        applied: dict[str, int | None] = {z: s.applied_step() for z, s in zone_statuses.items()}  # type: ignore[union-attr]
        for z in zones:
            applied.setdefault(z, None)
        applied[MESH] = mesh_step  # type: ignore[assignment]
        readiness = {}
        for z, zs in zone_statuses.items():  # type: ignore[union-attr]
            readiness[z] = Readiness(
                primary=zs.ready_percent(spec.service.name, spec.primary.version) if z in spec.primary.zones else None,
                canary=zs.ready_percent(spec.service.name, spec.canary.version) if z in spec.canary.zones else None,
                canary_failed=zs.failed(spec.service.name, spec.canary.version) if z in spec.canary.zones else "",
            )
        obs = Observations(spec=spec, fleet=self.adapters.fleet, applied=applied, readiness=readiness,
                           metrics=metrics, hooks=hook_results, command=command)  # type: ignore[arg-type]
        return obs, zone_statuses  # type: ignore[return-value]

    async def execute(self, canary: FederatedCanary, decision: Decision) -> dict[str, str]:
        commits: dict[str, str] = {}
        spec = canary.spec
        for action in decision.actions:
            if isinstance(action, SetWeights):
                result = await self.adapters.apply_step(canary, action)
                commits.update(result.commits)
            elif isinstance(action, Emit):
                level = {"info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}[action.severity]
                log.log(level, "%s: %s: %s", self.key, action.reason, action.message)
                await alerts.notify(self.adapters.fleet.spec.alert_providers, canary, decision.status.phase.value,
                                    action.severity, action.reason, action.message)
                event_hooks = spec.analysis.hooks(WebhookType.EVENT)
                if event_hooks:
                    await webhooks.send_event(event_hooks, canary.metadata.name, canary.metadata.namespace,
                                              decision.status.phase.value, action.severity, action.message)
            elif isinstance(action, CallHooks):
                results = await self._hooks(canary, (action.type,), decision.status)
                for name, r in results.items():
                    if not r.ok:
                        log.warning("%s: %s hook %s failed: %s", self.key, action.type.value, name, r.message)
        return commits

    async def recover(self, status: RolloutStatus, now: float) -> RolloutStatus:
        """Git is ahead of the state store when the hub died between a commit and saving status:
        adopt the committed step (its weights and stage) so no weight regresses and no step repeats."""
        last = self.adapters.last_step(self.key)
        rec = last.record if last is not None else None
        if rec is None or rec.step <= status.step:
            return status
        phase = rec.stage.phase_after(status.phase)
        log.warning("%s: Git holds step %d (%s) beyond the stored step %d: resuming from Git",
                    self.key, rec.step, rec.stage.value, status.step)
        target = str(rec.target) if rec.target is not None else status.target
        versions = {}
        if rec.target is not None and target != status.target:
            versions = {"primary_version": rec.target.primary_version, "canary_version": rec.target.canary_version,
                        "failed_checks": 0, "iterations": 0, "started_at": now}
        recovered = status.with_(step=rec.step, phase=phase, target=target, **versions,
                                 canary_weight=rec.canary_weight, mirror_weight=rec.mirror_weight, converged_at=None,
                                 next_analysis_at=None, step_started_at=now, held_since=None,
                                 message=f"resumed from Git at step {rec.step}")
        if phase is Phase.FAILED and recovered.failed_checks < status.failed_checks:
            recovered = recovered.with_(failed_checks=status.failed_checks)
        await self.store.save(self.key, recovered)
        return recovered

    async def tick(self, canary: FederatedCanary, command: Command | None = None) -> TickReport:
        now = self.clock()
        status = await self.store.load(self.key)
        # Git can only be ahead of the store when a hub died mid-step (this one, or the replica that
        # held the rollout before): that is known on the worker's first tick, not on every tick.
        if not self._resynced:
            status = await self.recover(status, now)
        if not self._resynced and status.step > 0:
            # A (re)started worker applies the current step again: Git may hold it while the edge or a
            # zone never got it (the hub died between commit and apply). Commits are found, not redone.
            last = self.adapters.last_step(self.key)
            rec = last.record if last is not None else None
            if rec is not None and rec.step == status.step and RolloutTarget.of(canary.spec).same(rec.target):
                try:
                    await self.adapters.apply_step(canary, rec.action())
                except FederationError as exc:
                    log.error("%s: applying step %d again failed, will retry: %s", self.key, status.step, exc)
                    report = TickReport(self.key, now, status, Decision(status), None, error=str(exc))
                    await self._notify(report)
                    return report
        self._resynced = True
        obs, zones = await self.observe(canary, status, now, command)
        decision = core.decide(status, obs, now)
        report = TickReport(self.key, now, status, decision, obs, zones)
        try:
            report.commits = await self.execute(canary, decision)
        except FederationError as exc:
            # Nothing is saved: the same decision is made again next tick, and the executor's
            # idempotency keeps a half-done step from being committed twice.
            report.error = str(exc)
            # Once per distinct error (the next ticks retry the same step): the hub's reasons say
            # the rest (which zone waits, and why) in status and watch.
            log.log(logging.ERROR if report.error != self._last_error else logging.DEBUG,
                    "%s: executing step failed, will retry: %s", self.key, exc)
            self._last_error = report.error
            await self._notify(report)
            return report
        try:
            await self.store.save(self.key, decision.status)
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
