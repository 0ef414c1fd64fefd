"""``fedctl hub run``: every FederatedCanary in the mesh repo, one supervised worker each.

Discovery re-reads the mesh repo; each rollout gets one ordered worker (a named task) ticking on
its own pace — fast while a step converges, the analysis interval otherwise. A worker that raises
is logged and restarted with backoff; it never takes the hub down. Operator commands (pause,
resume, promote, abort, retry) arrive through the API, are kept on disk until a tick consumed them,
and so survive a hub restart (``hub.desk``); the API's views: ``hub.views``. Callers: fedctl, tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from federation.core import decide as core
from federation.core.errors import FederationError
from federation.core.spec import FederatedCanary, Fleet
from federation.core.state import Emit, Phase, RolloutStatus
from federation.hub import journal, leasing
from federation.hub import parts as hub_parts
from federation.hub.commands import Commands
from federation.hub.desk import CommandDesk
from federation.hub.locks import SharedLock, StateLock
from federation.hub.metrics import HubMetrics
from federation.hub.store import FileStore, Store
from federation.hub.worker import RolloutWorker, TickReport

log = logging.getLogger("federation.hub")
CONVERGING_LOOK = 0.05  # seconds from a step to the first look at whether it is applied everywhere


class Hub:
    """``shards``: when several replicas run (in a cluster), each runs only the rollouts whose
    per-rollout Lease it holds; without it, this hub runs every rollout (one per state dir)."""

    def __init__(self, fleet: Fleet, state_dir: Path, *, tick: float = 1.0, discover_every: float = 5.0,
                 shards: Any | None = None, events: Any | None = None,
                 store: Store | None = None, parts: hub_parts.Parts | None = None, commands: Any | None = None) -> None:
        self.fleet = fleet
        self.state_dir = Path(state_dir)
        self.lock = StateLock(self.state_dir)
        self.lock.acquire()
        self.parts = parts if parts is not None else hub_parts.build(fleet, self.state_dir / "work")
        self.store: Store = store if store is not None else FileStore(self.state_dir / "state")
        # Operator commands: files here, or ConfigMaps on the hub's cluster (any replica takes the API
        # call, the one running the rollout consumes it).
        self.commands = commands if commands is not None else Commands(self.state_dir / "commands")
        self.desk = CommandDesk(self.commands)
        self.metrics = HubMetrics(fleet)
        self.tick = tick
        self.discover_every = discover_every
        self.canaries: dict[str, FederatedCanary] = {}
        self.paths: dict[str, str] = {}  # rollout -> its file in the mesh repo
        self.problems: dict[str, str] = {}
        self.invalid: dict[str, str] = {}  # rollout -> why its file is invalid (it runs its last valid spec)
        self.rejected: dict[str, str] = {}  # rollout -> why its file is invalid (it does not run: phase Invalid)
        self.errors: dict[str, str] = {}  # part of the hub (``leases``) -> what fails there now
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.last: dict[str, TickReport] = {}
        # rollout -> the steps this hub has seen it take (its current rollout only) and its events,
        # for the web pages.
        self.steps: journal.Log = {}
        self.events_seen: journal.Log = {}
        self.changes = journal.Changes()  # what the web pages' live stream waits on
        self.hook_answers: dict[str, dict[str, dict[str, Any]]] = {}  # rollout -> webhook -> its last answer
        self.restarts: dict[str, int] = {}
        self.shards = shards
        self.events = events  # kubernetes Api of the hub's cluster, for phase-change Events
        self.owned: set[str] | None = None
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        # Set to cut a worker's sleep short: an operator command arrived, or its spec changed.
        self._wake: dict[str, asyncio.Event] = {}
        # rollout -> zone -> why it has not applied the current step (logged when it appears).
        self.waiting: dict[str, dict[str, str]] = {}
        # Discovery refreshes the clones (fetch + reset) alone; ticks of different rollouts run
        # together between refreshes (each repo has its own lock for commits).
        self.clones = SharedLock()

    # -- discovery and supervision ------------------------------------------------------------

    async def _from_history(self, path: str) -> FederatedCanary | None:
        """The canary of a file in the mesh repo that is invalid now, as its last valid version in
        Git defines it, when this hub ran that rollout before (it has a stored status)."""
        old = await self.parts.last_valid(path)
        return old if old is not None and old.key in await self.store.keys() else None

    async def discover(self) -> None:
        async with self.clones.exclusive():
            await self.parts.sync()
        found = await self.parts.canaries(set(self.canaries))
        self.problems = {k: p for k, (_, c, p) in found.items() if c is None}
        before, before_paths = self.canaries, self.paths
        canaries = {k: c for k, (_, c, _) in found.items() if c is not None}
        paths = {k: path for k, (path, c, _) in found.items() if c is not None}
        # A running rollout whose file turned invalid (a YAML typo, a bad field) is not detached:
        # it keeps its last good spec, so it still runs and can be paused or aborted, and shows as
        # Invalid with the reason until the file is fixed. A removed file still removes it.
        invalid: dict[str, str] = {}
        for key, old_spec in before.items():
            if key in canaries:
                continue
            old_path = before_paths.get(key)
            reason = self.problems.get(key) or next(
                (p for _, (path, c, p) in found.items() if c is None and path == old_path), None)
            if reason is None:
                continue
            canaries[key], paths[key], invalid[key] = old_spec, old_path or "", reason
        for _, (path, c, reason) in found.items():  # after a restart: the last valid spec from Git
            if c is None and path not in paths.values() and (old := await self._from_history(path)) \
                    and old.key not in canaries \
                    and old.spec.service.name not in {x.spec.service.name for x in canaries.values()}:
                canaries[old.key], paths[old.key], invalid[old.key] = old, path, reason
        self.rejected = {k: p for k, (path, c, p) in found.items() if c is None and k != path and k not in canaries}
        for key in sorted(invalid.keys() - self.invalid.keys()):
            log.warning("%s: its spec is now invalid; running the last valid one until fixed: %s", key, invalid[key])
            await self._event(key, "InvalidSpec", f"the spec is invalid; the last valid one keeps running: {invalid[key]}")
        for key in sorted(self.invalid.keys() - invalid.keys()):
            log.info("%s: its spec is valid again", key)
        self.invalid = invalid
        self.canaries, self.paths = canaries, paths
        self.metrics.spec_problems(sorted(canaries), invalid, len(self.problems))
        for key, c in self.canaries.items():
            old = before.get(key)
            if old is not None and core.target_of(old.spec) != core.target_of(c.spec):
                self.wake(key)  # a new release: start it now, not at the end of the current sleep
        mine = set(self.canaries)
        if self.shards is not None:
            mine = await leasing.reconcile(self.shards, sorted(self.canaries), self.errors)
            if mine != self.owned:
                log.info("this replica runs %d of %d rollouts: %s", len(mine), len(self.canaries), sorted(mine))
        self.owned = mine
        self.metrics.discovery(self.canaries, mine, sharded=self.shards is not None, now=time.time(),
                               renewed="leases" not in self.errors)
        self.changes.note("", (sorted(self.canaries), sorted(mine), self.problems, self.invalid, dict(self.errors)))
        for key in sorted(mine):
            if key not in self.tasks or self.tasks[key].done():
                self.tasks[key] = asyncio.create_task(self._supervise(key), name=f"rollout:{key}")
        for key in [k for k in self.tasks if k not in mine]:
            self.tasks.pop(key).cancel()
            log.info("%s: no longer run by this replica (removed, or its Lease moved)", key)
        self.ready.set()

    async def _supervise(self, key: str) -> None:
        worker = RolloutWorker(key, self.parts, self.store)
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
                worker = RolloutWorker(key, self.parts, self.store)

    async def _run(self, worker: RolloutWorker, key: str) -> None:
        while not self._stop.is_set() and key in self.canaries and (self.owned is None or key in self.owned):
            canary = self.canaries[key]
            pending = await self.desk.pending(key)
            command = pending["command"] if pending else None
            t0 = time.perf_counter()
            async with self.clones.shared():
                report = await worker.tick(canary, command)
            self.metrics.observe(report, time.perf_counter() - t0, canary)
            self.last[key] = report
            journal.record(self.steps, self.hook_answers, self.events_seen, report)
            self.changes.tick(report, self.events_seen)
            self.waiting[key] = journal.explain(self.waiting.get(key, {}), report)
            await self.forward_events(report)
            if pending is not None and not report.error:
                await self.desk.consumed(key, pending, report.status, report.decision.status)
            await self._sleep_worker(key, self.tick if report.error else self._pace(canary, report.decision.status))

    async def forward_events(self, report: TickReport) -> None:
        """Each event of a tick as a Kubernetes Event (when the hub runs in a cluster)."""
        for a in report.decision.actions:
            if isinstance(a, Emit):
                await self._event(report.key, a.reason, a.message, "Warning" if a.severity != "info" else "Normal")

    async def _event(self, key: str, reason: str, message: str, kind: str = "Warning") -> None:
        """An Event on the FederatedCanary in its own namespace (an Event lives in the namespace of
        the object it names), on the hub's cluster when it runs in one."""
        if self.events is None:
            return
        from federation.runtimes import kubernetes as kube

        ns, name = key.split("/", 1)
        try:
            await kube.emit_event(self.events, {"kind": "FederatedCanary", "name": name, "namespace": ns,
                                                "apiVersion": "federation.io/v1alpha1"}, reason, message[:1000], kind)
        except FederationError as exc:
            log.warning("%s: event not recorded: %s", key, exc)

    def _pace(self, canary: FederatedCanary, status: RolloutStatus) -> float:
        if status.phase in (Phase.SUCCEEDED, Phase.FAILED, Phase.INITIALIZED) or status.paused:
            return max(self.tick, self.discover_every)
        if status.converged_at is None:  # a step converging: look soon, then at half its age, up to the tick
            return min(self.tick, max(CONVERGING_LOOK, (time.time() - (status.step_started_at or 0)) / 2))
        due = (status.next_analysis_at or 0) - time.time()
        return min(max(self.tick, due), canary.spec.analysis.interval_seconds)

    def wake(self, key: str) -> None:
        """Cut the sleep of ``key``'s worker short (or the next one, when it is mid-tick)."""
        self._wake.setdefault(key, asyncio.Event()).set()

    async def _sleep_worker(self, key: str, seconds: float) -> None:
        event = self._wake.setdefault(key, asyncio.Event())
        if not self._stop.is_set() and not event.is_set():
            timer = asyncio.get_running_loop().call_later(seconds, event.set)  # not wait_for: no task per sleep
            try:
                await event.wait()
            finally:
                timer.cancel()
        event.clear()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    async def run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    await self.discover()
                except Exception:
                    self.metrics.discovery_failed()
                    log.exception("discovery failed; keeping the rollouts already known")
                await self._sleep(self.discover_every)
        finally:
            for t in self.tasks.values():
                t.cancel()
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)
            if self.shards is not None:
                await self.shards.release_all()
            await self.parts.close()
            self.lock.release()

    def stop(self) -> None:
        self._stop.set()
        self.changes.close()
        for event in self._wake.values():
            event.set()
