"""``fedctl hub run``: every FederatedCanary in the mesh repo, one supervised worker each.

Discovery re-reads the mesh repo; each rollout gets one ordered worker (a named task) ticking on
its own pace — fast while a step converges, the analysis interval otherwise. A worker that raises
is logged and restarted with backoff; it never takes the hub down. Operator commands (pause,
resume, promote, abort, retry) arrive through the API, are kept on disk until a tick consumed them,
and so survive a hub restart. Callers: ``fedctl hub run``, tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from federation.core import decide as core
from federation.core.errors import FederationError, PermanentError
from federation.core.spec import FederatedCanary, Fleet
from federation.core.state import Command, Emit, Phase, RolloutStatus
from federation.core.weights import subsets_for
from federation.hub.fleet import FleetAdapters
from federation.hub.metrics import HubMetrics
from federation.hub.store import FileStore, Store, check_command
from federation.hub.worker import RolloutWorker, TickReport

log = logging.getLogger("federation.hub")


class Commands:
    """Pending operator commands, one file per rollout, removed once a tick consumed them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / (key.replace("/", "__") + ".json")

    async def put(self, key: str, command: str) -> None:
        check_command(command)
        tmp = self._path(key).with_suffix(".tmp")
        tmp.write_text(json.dumps({"command": command, "at": time.time()}))
        tmp.rename(self._path(key))

    async def pending(self, key: str) -> tuple[Command, str] | None:
        """The pending command and what identifies this one request (its time of arrival)."""
        try:
            doc = json.loads(self._path(key).read_text())
            return doc["command"], str(doc.get("at", ""))
        except (FileNotFoundError, ValueError, KeyError):
            return None

    async def peek(self, key: str) -> Command | None:
        got = await self.pending(key)
        return got[0] if got else None

    async def done(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


class StateLock:
    """One hub per state directory on one machine: an exclusive flock, released when the process
    ends (also when killed), so a restarted hub takes over at once and a second one is refused."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / "hub.lock"
        self.fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self.path.read_text().strip() or "another process"
            os.close(fd)
            raise PermanentError(f"{self.path.parent} is in use by hub pid {holder}; one hub per state directory") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


class SharedLock:
    """Many holders of ``shared()`` at once, or one of ``exclusive()``; a waiting exclusive holder
    goes first (new shared holders wait), so discovery is not starved by busy workers."""

    def __init__(self) -> None:
        self._cond = asyncio.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting = 0

    @contextlib.asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._exclusive and not self._waiting)
            self._shared += 1
        try:
            yield
        finally:
            async with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self._cond:
            self._waiting += 1
            try:
                await self._cond.wait_for(lambda: not self._exclusive and not self._shared)
            finally:
                self._waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            async with self._cond:
                self._exclusive = False
                self._cond.notify_all()


class Hub:
    """``shards``: when several replicas run (in a cluster), each runs only the rollouts whose
    per-rollout Lease it holds; without it, this hub runs every rollout (one per state dir)."""

    def __init__(self, fleet: Fleet, state_dir: Path, *, tick: float = 1.0, discover_every: float = 5.0,
                 shards: Any | None = None, events: Any | None = None,
                 store: Store | None = None, adapters: Any | None = None, commands: Any | None = None) -> None:
        self.fleet = fleet
        self.state_dir = Path(state_dir)
        self.lock = StateLock(self.state_dir)
        self.lock.acquire()
        self.adapters = adapters if adapters is not None else FleetAdapters(fleet, self.state_dir / "work")
        self.store: Store = store if store is not None else FileStore(self.state_dir / "state")
        # Operator commands: files here, or ConfigMaps on the hub's cluster (any replica takes the API
        # call, the one running the rollout consumes it).
        self.commands = commands if commands is not None else Commands(self.state_dir / "commands")
        self.metrics = HubMetrics()
        self.tick = tick
        self.discover_every = discover_every
        self.canaries: dict[str, FederatedCanary] = {}
        self.problems: dict[str, str] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.last: dict[str, TickReport] = {}
        self.restarts: dict[str, int] = {}
        self.shards = shards
        self.events = events  # kubernetes Api of the hub's cluster, for phase-change Events
        # Commands applied but not cleared (the store refused the delete): never applied twice,
        # shown in the rollout's status, cleared again at every tick. key -> (identity, view).
        self.uncleared: dict[str, tuple[str, dict[str, str]]] = {}
        self.owned: set[str] | None = None
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        # Discovery refreshes the clones (fetch + reset) alone; ticks of different rollouts run
        # together between refreshes (each repo has its own lock for commits).
        self._clones = SharedLock()

    # -- discovery and supervision ------------------------------------------------------------

    async def discover(self) -> None:
        async with self._clones.exclusive():
            await self.adapters.sync()
        found = self.adapters.canaries()
        self.problems = {k: p for k, (_, c, p) in found.items() if c is None}
        self.canaries = {k: c for k, (_, c, _) in found.items() if c is not None}
        mine = set(self.canaries)
        if self.shards is not None:
            mine = await self.shards.reconcile(sorted(self.canaries))
            if mine != self.owned:
                log.info("this replica runs %d of %d rollouts: %s", len(mine), len(self.canaries), sorted(mine))
        self.owned = mine
        for key in sorted(mine):
            if key not in self.tasks or self.tasks[key].done():
                self.tasks[key] = asyncio.create_task(self._supervise(key), name=f"rollout:{key}")
        for key in [k for k in self.tasks if k not in mine]:
            self.tasks.pop(key).cancel()
            log.info("%s: no longer run by this replica (removed, or its Lease moved)", key)
        self.ready.set()

    async def _supervise(self, key: str) -> None:
        worker = RolloutWorker(key, self.adapters, self.store)
        backoff = 1.0
        while not self._stop.is_set():
            try:
                await self._run(worker, key)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                self.restarts[key] = self.restarts.get(key, 0) + 1
                log.exception("%s: rollout worker crashed (restart %d in %.0fs)", key, self.restarts[key], backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 60.0)
                worker = RolloutWorker(key, self.adapters, self.store)

    async def _run(self, worker: RolloutWorker, key: str) -> None:
        while not self._stop.is_set() and key in self.canaries and (self.owned is None or key in self.owned):
            canary = self.canaries[key]
            command, ident = await self._pending(key)
            t0 = time.perf_counter()
            async with self._clones.shared():
                report = await worker.tick(canary, command)
            self.metrics.observe(report, time.perf_counter() - t0)
            self.last[key] = report
            await self.forward_events(report)
            if command is not None and not report.error:
                await self._clear(key, command, ident)
            await self._sleep(self._pace(canary, report.decision.status))

    async def _pending(self, key: str) -> tuple[Command | None, str]:
        """The command for this tick: a pending one not applied yet. One applied already but not
        cleared is not given to the core again (a repeated promote or pause would hold the rollout
        where it is); clearing it is tried again instead."""
        try:
            got = await self.commands.pending(key)
        except FederationError as exc:
            log.warning("%s: pending commands unreadable: %s", key, exc)
            return None, ""
        stuck = self.uncleared.get(key)
        if got is None:
            self.uncleared.pop(key, None)  # cleared by someone else
            return None, ""
        command, ident = got
        if stuck is None or stuck[0] != ident:
            self.uncleared.pop(key, None)  # a newer command replaced the stuck one
            return command, ident
        await self._clear(key, command, ident)
        return None, ""

    async def _clear(self, key: str, command: str, ident: str) -> None:
        try:
            await self.commands.done(key)
        except FederationError as exc:
            if key not in self.uncleared:
                log.error("%s: command %s was applied but cannot be cleared (%s); it will not be applied "
                          "again, and clearing is retried at every tick", key, command, exc)
            self.uncleared[key] = (ident, {"command": command, "error": str(exc)})
            return
        if key in self.uncleared:
            log.info("%s: command %s cleared", key, command)
        self.uncleared.pop(key, None)

    async def forward_events(self, report: TickReport) -> None:
        """Each event of a tick as a Kubernetes Event on the hub's cluster (when it runs in one), in
        the FederatedCanary's namespace: an Event lives in the namespace of the object it names."""
        if self.events is None:
            return
        from federation.runtimes import kubernetes as kube

        ns, name = report.key.split("/", 1)
        for a in report.decision.actions:
            if isinstance(a, Emit):
                try:
                    await kube.emit_event(self.events, {"kind": "FederatedCanary", "name": name, "namespace": ns,
                                                        "apiVersion": "federation.io/v1alpha1"},
                                          a.reason, a.message, "Warning" if a.severity != "info" else "Normal")
                except FederationError as exc:
                    log.warning("%s: event not recorded: %s", report.key, exc)

    def _pace(self, canary: FederatedCanary, status: RolloutStatus) -> float:
        if status.phase in (Phase.SUCCEEDED, Phase.FAILED, Phase.INITIALIZED) or status.paused:
            return max(self.tick, self.discover_every)
        if status.converged_at is None:
            return self.tick  # a step is converging: look often
        due = (status.next_analysis_at or 0) - time.time()
        return min(max(self.tick, due), canary.spec.analysis.interval_seconds)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    async def run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    await self.discover()
                except Exception:
                    log.exception("discovery failed; keeping the rollouts already known")
                await self._sleep(self.discover_every)
        finally:
            for t in self.tasks.values():
                t.cancel()
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)
            if self.shards is not None:
                await self.shards.release_all()
            await self.adapters.close()
            self.lock.release()

    def stop(self) -> None:
        self._stop.set()

    # -- views for the API ----------------------------------------------------------------------

    async def rollout(self, key: str) -> dict[str, Any]:
        canary = self.canaries.get(key)
        status = await self.store.load(key)
        report = self.last.get(key)
        zones: dict[str, Any] = {}
        if report is not None and report.observations is not None:
            obs = report.observations
            for z, step in obs.applied.items():
                r = obs.readiness.get(z)
                zones[z] = {"appliedStep": step, "primaryReady": r.primary if r else None,
                            "canaryReady": r.canary if r else None}
        weights: dict[str, int] = {}
        if canary is not None:
            weights = {str(s): w for s, w in sorted(subsets_for(canary.spec, status.canary_weight, self.fleet).items())}
        return {
            "rollout": key,
            "phase": status.phase.value,
            "paused": status.paused,
            "primary": canary.spec.primary.model_dump(by_alias=True) if canary else None,
            "canary": canary.spec.canary.model_dump(by_alias=True) if canary else None,
            "canaryWeight": status.canary_weight,
            "weights": weights,
            "step": status.step,
            "failedChecks": status.failed_checks,
            "threshold": canary.spec.analysis.threshold if canary else None,
            "message": status.message,
            "zones": zones,
            "checks": [c.for_storage() for c in status.last_checks],
            "pendingCommand": await self.commands.peek(key),
            "commandNotCleared": self.uncleared[key][1] if key in self.uncleared else None,
            "workerRestarts": self.restarts.get(key, 0),
            "target": status.target,
            "upToDate": canary is not None and core.same_target(canary.spec, status.target),
            "checksum": canary.spec.checksum if canary else None,
        }

    async def rollouts(self) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*[self.rollout(k) for k in sorted(self.canaries)]))
