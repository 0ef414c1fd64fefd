"""Carries out one ``SetWeights``: zone commits and the mesh route, in the order that keeps
requests whole, with pull-request deferral. Nothing else: what to do is ``core.decide``'s, how a
zone or a mesh applies it is ``runtimes``'.

Without retirements, zones go first (new instances come up at the weight they get), then the
mesh, once every zone it sends to reports the step applied (its versions healthy and routed): a
zone only told to converge may run nothing yet (a fresh or restarted agent), and the edge would
send requests to an ingress with nothing to serve them (503). With retirements (rollback,
finalising), the mesh goes first — and the executor waits until it is live — so no request is
sent to a zone whose instances are being stopped. A zone repo in pull-request mode gets the step
on a branch; that zone (and, when zones go first, the mesh) follows once it is merged
(``advance``, before each observation). Every commit carries the step's
``StepRecord``; one already there is found, not written again (crash safety).
Callers: ``hub.worker``, ``hub.parts`` (built once per fleet).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from federation.core import spec as specs
from federation.core.errors import TemporaryError
from federation.core.state import SetWeights
from federation.core.steps import StepRecord
from federation.core.weights import canary_shares
from federation.gitops import meshrepo
from federation.gitops.aio import AsyncRepo
from federation.routers.model import RouteRequest
from federation.runtimes.ports import MeshRoute, ZoneRuntime
from federation.runtimes.routes import MESH

log = logging.getLogger("federation.hub")


@dataclass(frozen=True)
class StepResult:
    commits: dict[str, str]  # repo name -> sha (only repos that changed)


@dataclass
class Deferred:
    """A step whose mesh route waits: for zone commits in pull-request branches (each zone converges
    once its branch is merged), then for every zone the route gives weight to report the step
    applied (new instances healthy and routed before traffic)."""

    canary: specs.FederatedCanary
    record: StepRecord
    message: str
    waiting: dict[str, str]  # zone -> our commit on its branch
    mesh_done: bool
    applying: set[str] = field(default_factory=set)  # zones the mesh waits for to report the step applied


@dataclass
class Executor:
    fleet: specs.Fleet
    zones: Mapping[str, ZoneRuntime]
    mesh: AsyncRepo
    route: MeshRoute
    mesh_timeout: float = 15.0  # how long a retiring step waits for the mesh route to be live
    zone_timeout: float = 10.0  # how long a step waits in place for new zones before leaving it to ``advance``
    zone_poll: float = 0.1
    deferred: dict[str, Deferred] = field(default_factory=dict)  # rollout -> its step waiting for merges

    @staticmethod
    def branch_for(key: str, step: int) -> str:
        return f"federation/{key}/step-{step}"

    def route_request(self, canary: specs.FederatedCanary, rec: StepRecord) -> RouteRequest:
        s = canary.spec
        return RouteRequest(
            service=s.service.name, namespace=canary.metadata.namespace, port=s.service.port,
            primary_version=s.primary.version, canary_version=s.canary.version, weights=rec.weights,
            step=rec.step, rollout=canary.key, mirror_weight=rec.mirror_weight, matched=rec.matched,
            match=tuple(s.analysis.match or ()), session_affinity=s.analysis.session_affinity,
            zones=tuple(self.fleet.zone_names), canary_zones=tuple(s.canary.zones),
            canary_shares=canary_shares(s, self.fleet),
        )

    @staticmethod
    def record(canary: specs.FederatedCanary, action: SetWeights) -> tuple[StepRecord, str]:
        """The step's record and the commit message every repo gets for it."""
        rec = StepRecord.of(canary.key, canary.spec, action)
        return rec, rec.message(canary.spec.service.name, canary.spec.canary.version, action.reason)

    async def commit_mesh(self, canary: specs.FederatedCanary, rec: StepRecord,
                          message: str) -> tuple[list[dict[str, Any]], str | None]:
        """The step's rendered route committed to the mesh repo: (documents, commit or None)."""
        docs = self.route.render(self.route_request(canary, rec))
        return docs, await meshrepo.commit_route(self.mesh, canary.spec.service.name, docs, rec, message)

    async def mesh_step(self, canary: specs.FederatedCanary, step: int) -> int | None:
        return await self.route.live_step(canary.key, canary.spec.service.name, step)

    async def _mesh(self, canary: specs.FederatedCanary, rec: StepRecord, message: str, commits: dict[str, str],
                    wait: bool) -> None:
        docs, sha = await self.commit_mesh(canary, rec, message)
        if sha:
            commits[MESH] = sha
        await self.route.apply(docs)
        if wait:
            # Retiring instances: the route must be live without them first. A mesh applied by Flux
            # may take longer than this; the tick then fails, and the next one (the commit found,
            # not redone) waits again.
            deadline = time.monotonic() + self.mesh_timeout
            while (await self.mesh_step(canary, rec.step) or 0) < rec.step:
                if time.monotonic() > deadline:
                    raise TemporaryError(f"mesh route did not reach step {rec.step} within {self.mesh_timeout:g}s")
                await asyncio.sleep(self.route.poll_seconds)

    async def apply_step(self, canary: specs.FederatedCanary, action: SetWeights) -> StepResult:
        """Commit and apply one step (see the module's docstring for the order)."""
        return await self.apply_record(canary, *self.record(canary, action))

    async def apply_record(self, canary: specs.FederatedCanary, rec: StepRecord, message: str) -> StepResult:
        """Commit and apply a step as recorded (after a restart: the same trailers, figures included)."""
        key = canary.key
        zones = list(dict.fromkeys(canary.spec.primary.zones + canary.spec.canary.zones))
        commits: dict[str, str] = {}
        waiting: dict[str, str] = {}
        self.deferred.pop(key, None)  # a newer step replaces one still waiting

        async def zone_step(z: str) -> None:
            zone = self.zones[z]
            branch = self.branch_for(key, rec.step) if zone.pull_request else None
            sha = await zone.commit(canary, rec, message, branch)
            if sha:
                commits[z] = sha
            if branch is not None and sha and not await zone.repo.merged(sha):
                waiting[z] = sha
                log.info("%s: step %d for zone %s waits in branch %s to be merged", key, rec.step, z, branch)
                return
            await zone.converge(rec.step)

        if rec.retire:
            await self._mesh(canary, rec, message, commits, wait=True)
            await asyncio.gather(*[zone_step(z) for z in zones])
            if waiting:
                self.deferred[key] = Deferred(canary, rec, message, waiting, mesh_done=True)
        else:
            await asyncio.gather(*[zone_step(z) for z in zones])
            # Every zone the mesh sends to must serve the step first (a zone told to converge may not
            # run the version yet: a fresh or restarted agent, a new canary zone). The step waits here
            # a while, then ``advance`` (each tick) applies the mesh once they report it applied.
            sending = {s.zone for s, w in rec.weights if w > 0}
            self.deferred[key] = Deferred(canary, rec, message, waiting, mesh_done=False, applying=sending)
            deadline = time.monotonic() + self.zone_timeout
            while True:
                await self.advance(key, commits)
                if key not in self.deferred or waiting or time.monotonic() > deadline:
                    break
                await asyncio.sleep(self.zone_poll)
        return StepResult(commits)

    async def advance(self, key: str, commits: dict[str, str] | None = None) -> None:
        """A deferred step: converge each zone whose branch was merged; once none is waiting and
        every zone the mesh starts sending to reports the step applied, the mesh route (commit +
        apply). A zone that does not get there leaves the rollout waiting, and its progress
        deadline applies as to any zone that does not converge."""
        d = self.deferred.get(key)
        if d is None:
            return
        for z, sha in list(d.waiting.items()):
            zone = self.zones[z]
            if not await zone.repo.merged(sha):
                continue
            log.info("%s: step %d merged in zone %s: applying", key, d.record.step, z)
            del d.waiting[z]
            await zone.converge(d.record.step)
        if d.waiting:
            return
        if not d.mesh_done and d.applying:
            step = d.record.step
            zones = sorted(d.applying)
            seen = await asyncio.gather(*[self.zones[z].observe(d.canary, step) for z in zones])
            d.applying -= {z for z, o in zip(zones, seen, strict=True) if (o.applied_step() or 0) >= step}
            if d.applying:
                return
        if not d.mesh_done:
            await self._mesh(d.canary, d.record, d.message, {} if commits is None else commits, wait=False)
        del self.deferred[key]
