"""Leader election and rollout sharding on coordination.k8s.io/v1 Leases.

Every write is a PUT carrying the resourceVersion read just before it: when two replicas race,
the API server accepts one and answers 409 to the other, so there is never more than one holder
(no split brain, also with a stale view). A holder renews before ``duration`` runs out; a Lease not
renewed for ``duration`` may be taken over. ``Shards`` keeps one Lease per rollout, so when a
replica dies its rollouts move to the others as their Leases expire.
Callers: the hub (HA), tests against the emulator.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from federation.core.errors import FederationError
from federation.runtimes.kubernetes import Api, _error

log = logging.getLogger("federation.leases")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class MicroTime(dt.datetime):
    """A Lease's acquireTime and renewTime as the API server parses a MicroTime (RFC 3339 with
    always six fractional digits): the client writes datetimes with isoformat(), which drops the
    fraction on a whole second, and the server refuses that Lease (400)."""

    def isoformat(self, sep: str = "T", timespec: str = "auto") -> str:
        return self.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    @classmethod
    def of(cls, t: dt.datetime) -> MicroTime:
        return cls(t.year, t.month, t.day, t.hour, t.minute, t.second, t.microsecond, tzinfo=t.tzinfo or dt.UTC)


def _body(lease: k8s.V1Lease) -> k8s.V1Lease:
    if lease.spec is not None:
        for attr in ("acquire_time", "renew_time"):
            value = getattr(lease.spec, attr)
            if value is not None:
                setattr(lease.spec, attr, MicroTime.of(value))
    return lease


@dataclass
class LeaseState:
    holder: str | None
    renewed: dt.datetime | None
    duration: int
    transitions: int

    def expired(self, now: dt.datetime) -> bool:
        return self.renewed is None or now >= self.renewed + dt.timedelta(seconds=self.duration)


class Lease:
    def __init__(self, api: Api, namespace: str, name: str, identity: str, duration: int = 15,
                 clock: Callable[[], dt.datetime] = _now) -> None:
        self.api, self.namespace, self.name, self.identity = api, namespace, name, identity
        self.duration, self.clock = duration, clock
        self.held = False
        # Until when our last successful write keeps the Lease ours (by our clock, taken before the
        # write: the others count from the renewTime we wrote, which is not earlier).
        self.valid_until: dt.datetime | None = None

    async def try_acquire(self) -> bool:
        """One attempt to become (or stay) the holder. True while we hold the Lease."""
        now = self.clock()
        c = self.api.coordination
        try:
            lease = await self.api.call("lease", c.read_namespaced_lease, self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise _error(f"lease {self.name}", exc) from None
            body = k8s.V1Lease(metadata=k8s.V1ObjectMeta(name=self.name, namespace=self.namespace),
                               spec=k8s.V1LeaseSpec(holder_identity=self.identity, lease_duration_seconds=self.duration,
                                                    acquire_time=now, renew_time=now, lease_transitions=0))
            try:
                await self.api.call("lease", c.create_namespaced_lease, self.namespace, _body(body))
                self.held = True
                self.valid_until = now + dt.timedelta(seconds=self.duration)
            except ApiException as exc2:
                if exc2.status != 409:
                    raise _error(f"lease {self.name}", exc2) from None
                self.held = False  # someone created it first
            return self.held
        spec = lease.spec or k8s.V1LeaseSpec()
        state = LeaseState(spec.holder_identity, spec.renew_time, spec.lease_duration_seconds or self.duration,
                           spec.lease_transitions or 0)
        if state.holder != self.identity and not state.expired(now):
            self.held = False
            return False
        if state.holder != self.identity:
            spec.acquire_time = now
            spec.lease_transitions = state.transitions + 1
            spec.holder_identity = self.identity
        spec.renew_time = now
        spec.lease_duration_seconds = self.duration
        lease.spec = spec
        try:
            # resourceVersion from our read travels with the PUT: a stale view gets a 409.
            await self.api.call("lease", c.replace_namespaced_lease, self.name, self.namespace, _body(lease))
            if not self.held:
                log.info("lease %s/%s acquired by %s", self.namespace, self.name, self.identity)
            self.held = True
            self.valid_until = now + dt.timedelta(seconds=self.duration)
        except ApiException as exc:
            if exc.status != 409:
                raise _error(f"lease {self.name}", exc) from None
            self.held = False
        return self.held

    async def release(self) -> None:
        """Step down at once (on shutdown): clear the holder so another replica need not wait."""
        if not self.held:
            return
        c = self.api.coordination
        try:
            lease = await self.api.call("lease", c.read_namespaced_lease, self.name, self.namespace)
            if lease.spec and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.renew_time = None
                await self.api.call("lease", c.replace_namespaced_lease, self.name, self.namespace,
                                    _body(lease))
        except (ApiException, FederationError):
            pass  # not cleared: it expires after ``duration`` all the same
        self.held = False


def lease_name(rollout: str, prefix: str = "federation-rollout") -> str:
    digest = hashlib.sha256(rollout.encode()).hexdigest()[:12]
    return f"{prefix}-{digest}"


class Shards:
    """Per-rollout Leases: a replica runs exactly the rollouts whose Lease it holds."""

    def __init__(self, api: Api, namespace: str, identity: str, duration: int = 15,
                 clock: Callable[[], dt.datetime] = _now, max_share: int | None = None) -> None:
        self.api, self.namespace, self.identity, self.duration, self.clock = api, namespace, identity, duration, clock
        self.max_share = max_share
        self.leases: dict[str, Lease] = {}
        # Rollout -> why its Lease could not be read or written at the last reconcile (the API
        # server unreachable, RBAC...); empty when every call answered.
        self.errors: dict[str, str] = {}

    async def reconcile(self, rollouts: list[str]) -> set[str]:
        """Renew what we hold; take leases that are free, up to ``max_share``; always take over the
        leases of a replica that stopped renewing (its rollouts must not be orphaned). Returns the
        rollouts we own now. A Lease the API does not answer for is noted in ``errors`` and does
        not stop the others; one we held stays ours until it would expire (the others cannot take
        it before), then we let its rollout go."""
        self.errors = {}
        for key in rollouts:
            self.leases.setdefault(key, Lease(self.api, self.namespace, lease_name(key), self.identity,
                                              self.duration, self.clock))
        for key in [k for k in self.leases if k not in rollouts]:
            await self.leases.pop(key).release()
        owned = {k for k in sorted(rollouts) if self.leases[k].held and await self._attempt(k)}
        for key in sorted(rollouts):
            lease = self.leases[key]
            if lease.held or key in self.errors:
                continue
            orphaned = await self._orphaned(key)
            if not orphaned and self.max_share is not None and len(owned) >= self.max_share:
                continue
            if await self._attempt(key):
                owned.add(key)
        return owned

    async def _attempt(self, key: str) -> bool:
        """``try_acquire`` for ``key``'s Lease; when the API does not answer, True only while a
        Lease we held has not yet run out."""
        lease = self.leases[key]
        try:
            return await lease.try_acquire()
        except FederationError as exc:
            self.errors[key] = str(exc)
            lease.held = lease.held and lease.valid_until is not None and self.clock() < lease.valid_until
            return lease.held

    def still_held(self) -> set[str]:
        """The rollouts whose Lease we hold and which cannot have run out yet."""
        now = self.clock()
        return {k for k, lease in self.leases.items()
                if lease.held and lease.valid_until is not None and now < lease.valid_until}

    async def _orphaned(self, key: str) -> bool:
        """Held before by someone whose renewals stopped: an expired lease with a holder."""
        lease = self.leases[key]
        try:
            obj = await self.api.call("lease", self.api.coordination.read_namespaced_lease, lease.name, self.namespace)
        except ApiException:
            return False
        except FederationError as exc:
            self.errors[key] = str(exc)
            return False
        spec = obj.spec
        if spec is None or not spec.holder_identity:
            return False
        state = LeaseState(spec.holder_identity, spec.renew_time, spec.lease_duration_seconds or self.duration, 0)
        return state.expired(self.clock())

    async def release_all(self) -> None:
        for lease in self.leases.values():
            await lease.release()
