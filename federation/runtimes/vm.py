"""VM zones: the hub's side of the agent protocol, fanned out over a zone's hosts.

``VmAgents.apply`` pushes the zone's manifests at a revision to every host concurrently;
``observe`` asks every host for its status, re-pushes the desired state to any host that is behind
(a host that was down converges once it returns), and reports the zone's applied step (None while
any host is unreachable or behind) and per-version readiness (the worst host). ``VmZone`` is the
hub's ``ZoneRuntime`` for a VM zone. Callers: the hub (``VmZone``), ``fedctl agents`` (``VmAgents``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from typing import Any, cast

from federation.core.errors import FederationError
from federation.core.spec import FederatedCanary, Zone
from federation.core.steps import StepRecord
from federation.gitops import releases
from federation.gitops.aio import AsyncRepo
from federation.gitops.repo import Repo
from federation.runtimes.ssh import Pool, Target
from vmagent.protocol import ApplyAnswer, Desired, DrainAnswer, HelloAnswer, StatusAnswer, VersionStatus

log = logging.getLogger("federation.vm")


@dataclass
class HostStatus:
    target: str
    reachable: bool
    applied_step: int | None = None
    applied_revision: str | None = None
    versions: dict[str, VersionStatus] = field(default_factory=dict)
    agent_version: str | None = None
    health: str = "unknown"
    error: str = ""


@dataclass
class ZoneStatus:
    zone: str
    hosts: list[HostStatus]

    def applied_step(self) -> int | None:
        if not self.hosts or any(not h.reachable or h.applied_step is None for h in self.hosts):
            return None
        return min(h.applied_step for h in self.hosts if h.applied_step is not None)

    def ready_percent(self, service: str, version: str) -> float | None:
        key = f"{service}/{version}"
        values = []
        for h in self.hosts:
            v = h.versions.get(key)
            if not h.reachable or v is None:
                return None
            values.append(float(v.get("ready_percent", 0.0)))
        return min(values) if values else None

    def failed(self, service: str, version: str) -> str:
        return ""  # the agent restarts a failing instance itself; the rollout's deadline decides

    def reasons(self) -> list[str]:
        return [f"{h.target}: {h.error or 'unreachable'}" for h in self.hosts if h.error or not h.reachable]


def _behind(want: Desired | None, resp: StatusAnswer) -> bool:
    """Whether a host's stored desired state is older than ``want`` (by generation where both
    sides speak it; an agent that reports no generation field at all is compared by step)."""
    if want is None:
        return False
    stored = resp.get("step")
    if stored is None:
        return True
    if "generation" in want and "generation" in resp:
        generation = resp.get("generation")
        return generation is None or generation < want["generation"]
    return stored < want.get("step", 0)


class VmAgents:
    """The agents of one VM zone over SSH: apply a desired state, status, drain, hello."""

    def __init__(self, zone: Zone, pool: Pool) -> None:
        if not zone.hosts or not zone.known_hosts:
            raise FederationError(f"zone {zone.name}: a vm zone needs hosts and knownHosts")
        self.zone = zone
        self.pool = pool
        self.targets = [Target(h.address, h.port, h.user, zone.known_hosts, zone.identity_file) for h in zone.hosts]
        self.desired: Desired | None = None

    async def apply(self, revision: str, step: int, manifests: list[Any], generation: int | None = None) -> None:
        """Send every host this desired state. Rollouts of several services share a zone and send
        it concurrently: the newest generation (zone repo commit count) is kept for re-sends."""
        desired: Desired = {"revision": revision, "step": step, "manifests": manifests}
        if generation is not None:
            desired["generation"] = generation
            kept = (self.desired or {}).get("generation")
            if kept is not None and kept > generation:
                return  # a newer head (holding this one) was sent already; hosts refuse an older one
        self.desired = desired
        results = await asyncio.gather(*[self._push(t) for t in self.targets], return_exceptions=True)
        for t, r in zip(self.targets, results, strict=True):
            if isinstance(r, Exception):
                log.warning("zone %s host %s: apply not delivered: %s", self.zone.name, t, r)

    async def _push(self, t: Target) -> None:
        if self.desired is None:
            return
        resp = cast(ApplyAnswer, await self.pool.call(t, "apply", desired=self.desired))
        if not resp.get("ok"):
            raise FederationError(f"{t}: agent refused apply: {resp.get('error')}")
        if not resp.get("accepted", False):
            log.info("zone %s host %s: %s", self.zone.name, t, resp.get("reason"))

    async def _status(self, t: Target) -> HostStatus:
        try:
            resp = cast(StatusAnswer, await self.pool.call(t, "status"))
        except FederationError as exc:
            return HostStatus(str(t), False, error=str(exc))
        if not resp.get("ok"):
            return HostStatus(str(t), True, error=str(resp.get("error")))
        hs = HostStatus(str(t), True, resp.get("applied_step"), resp.get("applied_revision"),
                        resp.get("versions") or {}, resp.get("agent_version"), resp.get("health", "unknown"),
                        resp.get("error") or "")
        if _behind(self.desired, resp):
            # This host missed an apply (it was down, or restarted empty): send it again.
            try:
                await self._push(t)
            except FederationError as exc:
                hs.error = str(exc)
        return hs

    async def observe(self) -> ZoneStatus:
        return ZoneStatus(self.zone.name, list(await asyncio.gather(*[self._status(t) for t in self.targets])))

    async def drain(self, enable: bool, hosts: list[str] | None = None,
                    timeout: float = 30.0) -> list[tuple[str, DrainAnswer | str]]:
        """Take hosts out of rotation (``enable``) or back in: each agent fails its Envoy health
        check and answers once nothing is in flight (or ``timeout``). Per host: the answer or why not."""
        targets = [t for t in self.targets if hosts is None or t.address in hosts or str(t) in hosts]
        if hosts is not None and not targets:
            raise FederationError(f"zone {self.zone.name}: no host among {', '.join(hosts)}")

        async def one(t: Target) -> DrainAnswer | str:
            try:
                resp = cast(DrainAnswer, await self.pool.call(t, "drain", enable=enable, timeout=timeout,
                                                              _call_timeout=timeout + self.pool.call_timeout))
            except FederationError as exc:
                return str(exc)
            return resp if resp.get("ok") else str(resp.get("error"))

        results = await asyncio.gather(*[one(t) for t in targets])
        return [(str(t), r) for t, r in zip(targets, results, strict=True)]

    async def hello(self) -> list[tuple[str, HelloAnswer | str]]:
        out: list[tuple[str, HelloAnswer | str]] = []
        for t in self.targets:
            try:
                out.append((str(t), cast(HelloAnswer, await self.pool.call(t, "hello"))))
            except FederationError as exc:
                out.append((str(t), str(exc)))
        return out


class VmZone:
    """A VM zone as the hub drives it (``runtimes.ports.ZoneRuntime``): the step is committed to
    the zone repo; converging sends every agent the repo's head and its ZoneRelease manifests.

    Several rollouts (one per service) share a zone and its agents, each with its own step numbers,
    while an agent holds one desired state for the whole zone. So the number an agent orders desired
    states by (its ``step``) is the zone repo's generation (commits in the head's history: it grows
    with every commit on the branch), never a rollout's step, which would make the agent refuse a
    rollout whose steps are behind another's; and a rollout's applied step in the zone is read from
    the revision each agent applied, through Git ancestry (as for a Kubernetes zone)."""

    def __init__(self, zone: Zone, repo: AsyncRepo, pool: Pool) -> None:
        self.name = zone.name
        self.repo = repo
        self.pull_request = zone.git.pull_request
        self.agents = VmAgents(zone, pool)
        self._reached: dict[tuple[str, str, int], int | None] = {}  # (rollout, revision, step) -> step reached
        self._ours: dict[str, tuple[int, str]] = {}  # rollout -> (step, its commit on the zone branch), the last one

    async def commit(self, canary: FederatedCanary, record: StepRecord, message: str,
                     branch: str | None = None) -> str | None:
        sha = await releases.commit_step(self.repo, self.name, canary.spec.service.name, record, message, branch)
        if sha is not None and branch is None:
            self._ours[canary.key] = (record.step, sha)
        return sha

    async def converge(self, step: int) -> None:
        under = self.repo.path

        def desired(r: Repo) -> tuple[str, int, list[Any]]:
            # Under the clone's lock: another rollout's step may be editing this clone (its service's
            # file half written, or the head about to move); the agents must get a revision and the
            # manifests of that same revision. (Unlocked, a read in the middle of the payment rollout's
            # edit sent the zone a state without payment: its agent stopped payment's canary, 503.)
            with r.lock:
                head = r.head()
                return head, r.generation(head), releases.manifests(r, under)

        head, generation, manifests = await self.repo.call(desired)
        await self.agents.apply(head, step, manifests, generation)

    async def observe(self, canary: FederatedCanary, step: int) -> ZoneStatus:
        """Each host's applied step for this rollout, from the revision it applied (the zone repo
        holds every rollout's step commits; an agent's own step counter is the zone's, shared by
        every service there): a host counts only once it runs a revision holding our step."""
        st = await self.agents.observe()
        hosts = []
        for h in st.hosts:
            reached = None
            if h.reachable and h.applied_revision and self._ours.get(canary.key) == (step, h.applied_revision):
                reached = step  # the revision is this step's own commit (usually the head sent): no Git needed
            elif h.reachable and h.applied_revision:
                key = (canary.key, h.applied_revision, step)
                if key not in self._reached:
                    if len(self._reached) > 4096:
                        self._reached.clear()
                    self._reached[key] = await self.repo.step_reached(canary.key, h.applied_revision, step)
                reached = self._reached[key]
            hosts.append(replace(h, applied_step=reached))
        return ZoneStatus(st.zone, hosts)
