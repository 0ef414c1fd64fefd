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
import logging
import time
from pathlib import Path
from typing import Any

from federation.core import decide as core
from federation.core.errors import FederationError
from federation.core.spec import FederatedCanary, Fleet, Placement
from federation.core.state import Emit, Phase, RolloutStatus
from federation.core.steps import RolloutTarget
from federation.core.weights import as_percent, subsets_for
from federation.hub import parts as hub_parts
from federation.hub import reasons
from federation.hub.locks import SharedLock, StateLock
from federation.hub.metrics import HubMetrics
from federation.hub.store import Commands, FileStore, Store
from federation.hub.worker import RolloutWorker, TickReport

log = logging.getLogger("federation.hub")


def answer_for(command: str, before: RolloutStatus, after: RolloutStatus) -> dict[str, Any]:
    """Whether the tick that consumed ``command`` did what it asks, in the operator's words."""
    where = f"step {after.step}, canary {as_percent(after.canary_weight)}"
    ok = {
        "pause": after.paused and not before.paused,
        "resume": before.paused and not after.paused,
        "abort": after.phase is Phase.FAILED and before.phase is not Phase.FAILED,
        "retry": before.phase is Phase.FAILED and after.phase is not Phase.FAILED,
        "promote": after.phase in (Phase.PROMOTING, Phase.FINALISING, Phase.SUCCEEDED)
        and before.phase not in (Phase.PROMOTING, Phase.FINALISING, Phase.SUCCEEDED),
    }.get(command, False)
    if ok:
        did = {"pause": f"paused at {where}", "resume": f"resumed at {where}",
               "abort": f"rolled back ({where})", "retry": f"started again ({where})",
               "promote": f"promoting ({where})"}[command]
        return {"command": command, "state": "accepted", "message": f"{did}: phase {after.phase.value}: {after.message}"}
    why = after.message
    if command == "pause" and before.paused:
        why = "already paused"
    elif command == "resume" and not before.paused:
        why = f"not paused (phase {after.phase.value})"
    return {"command": command, "state": "rejected", "message": why}



def _ident(pending: dict[str, Any]) -> str:
    """What identifies one command request: its id, else its time of arrival."""
    return str(pending.get("id") or pending.get("at") or "")


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
        self.metrics = HubMetrics()
        self.tick = tick
        self.discover_every = discover_every
        self.canaries: dict[str, FederatedCanary] = {}
        self.paths: dict[str, str] = {}  # rollout -> its file in the mesh repo
        self.problems: dict[str, str] = {}
        self.invalid: dict[str, str] = {}  # rollout -> why its file is invalid (it runs its last valid spec)
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
        # Set to cut a worker's sleep short: an operator command arrived, or its spec changed.
        self._wake: dict[str, asyncio.Event] = {}
        self._answered: dict[str, asyncio.Event] = {}
        # rollout -> zone -> why it has not applied the current step (logged when it appears).
        self.waiting: dict[str, dict[str, str]] = {}
        # Discovery refreshes the clones (fetch + reset) alone; ticks of different rollouts run
        # together between refreshes (each repo has its own lock for commits).
        self._clones = SharedLock()

    # -- discovery and supervision ------------------------------------------------------------

    async def discover(self) -> None:
        async with self._clones.exclusive():
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
        for key in sorted(invalid.keys() - self.invalid.keys()):
            log.warning("%s: its spec is now invalid; running the last valid one until fixed: %s", key, invalid[key])
            await self._event(key, "InvalidSpec", f"the spec is invalid; the last valid one keeps running: {invalid[key]}")
        for key in sorted(self.invalid.keys() - invalid.keys()):
            log.info("%s: its spec is valid again", key)
        self.invalid = invalid
        self.canaries, self.paths = canaries, paths
        self.metrics.discovered(sorted(canaries), invalid, len(self.problems))
        for key, c in self.canaries.items():
            old = before.get(key)
            if old is not None and core.target_of(old.spec) != core.target_of(c.spec):
                self.wake(key)  # a new release: start it now, not at the end of the current sleep
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
            pending = await self._pending(key)
            command = pending["command"] if pending else None
            t0 = time.perf_counter()
            async with self._clones.shared():
                report = await worker.tick(canary, command)
            self.metrics.observe(report, time.perf_counter() - t0)
            self.last[key] = report
            self._explain(key, report)
            await self.forward_events(report)
            if pending is not None and not report.error:
                answer = answer_for(pending["command"], report.status, report.decision.status)
                log.info("%s: %s %s: %s", key, pending["command"], answer["state"], answer["message"])
                await self._clear(key, pending, answer)
                self._answered.setdefault(key, asyncio.Event()).set()
            await self._sleep_worker(key, self._pace(canary, report.decision.status))

    async def _pending(self, key: str) -> dict[str, Any] | None:
        """The command for this tick: a pending one not applied yet. One applied already but not
        cleared is not given to the core again (a repeated promote or pause would hold the rollout
        where it is); clearing it is tried again instead."""
        try:
            got = await self.commands.pending(key)
        except FederationError as exc:
            log.warning("%s: pending commands unreadable: %s", key, exc)
            return None
        stuck = self.uncleared.get(key)
        if got is None:
            self.uncleared.pop(key, None)  # cleared by someone else
            return None
        if stuck is None or stuck[0] != _ident(got):
            self.uncleared.pop(key, None)  # a newer command replaced the stuck one
            return got
        await self._clear(key, got, None)
        return None

    async def _clear(self, key: str, pending: dict[str, Any], answer: dict[str, Any] | None) -> None:
        command = pending["command"]
        try:
            await self.commands.done(key, pending.get("id"), answer)
        except FederationError as exc:
            if key not in self.uncleared:
                log.error("%s: command %s was applied but cannot be cleared (%s); it will not be applied "
                          "again, and clearing is retried at every tick", key, command, exc)
            self.uncleared[key] = (_ident(pending), {"command": command, "error": str(exc)})
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

    async def _event(self, key: str, reason: str, message: str) -> None:
        """A Warning Event on the FederatedCanary (when the hub runs in a cluster)."""
        if self.events is None:
            return
        from federation.runtimes import kubernetes as kube

        ns, name = key.split("/", 1)
        try:
            await kube.emit_event(self.events, {"kind": "FederatedCanary", "name": name, "namespace": ns,
                                                "apiVersion": "federation.io/v1alpha1"}, reason, message[:1000],
                                  "Warning")
        except FederationError as exc:
            log.warning("%s: event not recorded: %s", key, exc)

    def _pace(self, canary: FederatedCanary, status: RolloutStatus) -> float:
        if status.phase in (Phase.SUCCEEDED, Phase.FAILED, Phase.INITIALIZED) or status.paused:
            return max(self.tick, self.discover_every)
        if status.converged_at is None:
            return self.tick  # a step is converging: look often
        due = (status.next_analysis_at or 0) - time.time()
        return min(max(self.tick, due), canary.spec.analysis.interval_seconds)

    def _explain(self, key: str, report: TickReport) -> None:
        """Keep (and log once, when it appears or changes) why each zone is not at the step."""
        obs = report.observations
        status = report.decision.status
        if obs is None or status.paused:
            return
        now = reasons.reasons(status.step, dict(obs.applied), report.zones, report.error) if status.step else {}
        before = self.waiting.get(key, {})
        for z, why in now.items():
            if before.get(z) != why:
                log.warning("%s: zone %s has not applied step %d: %s", key, z, status.step, why)
        for z in before.keys() - now.keys():
            log.info("%s: zone %s reached step %s", key, z, obs.applied.get(z))
        self.waiting[key] = now

    def wake(self, key: str) -> None:
        """Cut the sleep of ``key``'s worker short (or the next one, when it is mid-tick)."""
        self._wake.setdefault(key, asyncio.Event()).set()

    async def _sleep_worker(self, key: str, seconds: float) -> None:
        event = self._wake.setdefault(key, asyncio.Event())
        if not self._stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), timeout=seconds)
        event.clear()

    async def command(self, key: str, command: str, wait: float) -> dict[str, Any]:
        """Queue ``command`` for ``key``, wake its worker, and wait up to ``wait`` seconds for the
        tick that consumes it: the answer (accepted or rejected), else state queued/pending."""
        cid = await self.commands.put(key, command)
        self.wake(key)
        base = {"rollout": key, "command": command, "id": cid}
        if wait <= 0:
            return {**base, "state": "queued", "message": "queued for the rollout's worker"}
        deadline = time.monotonic() + wait
        while True:
            answered = self._answered.setdefault(key, asyncio.Event())
            answered.clear()
            found = await self.commands.answer(key, cid)
            if found is not None:
                return {**base, "state": found["state"], "message": found["message"]}
            left = deadline - time.monotonic()
            if left <= 0:
                return {**base, "state": "pending",
                        "message": f"not yet consumed after {wait:g}s (the rollout's worker is busy, or another "
                                   "replica runs it); it stays queued"}
            with contextlib.suppress(asyncio.TimeoutError):  # another replica answers through the store
                await asyncio.wait_for(answered.wait(), timeout=min(left, 0.5))

    async def undo(self, key: str, *, skip_analysis: bool = False) -> dict[str, Any]:
        """A new rollout back to the previously promoted version (see ``hub.undo``), committed to
        the mesh repo; the answer names the commit, or why there is nothing to go back to."""
        from federation.gitops import releases
        from federation.gitops.repo import Repo
        from federation.hub import undo as undo_mod

        base = {"rollout": key, "command": "undo"}

        def rejected(why: str) -> dict[str, Any]:
            log.info("%s: undo rejected: %s", key, why)
            return {**base, "state": "rejected", "message": why}

        canary = self.canaries[key]
        status = await self.store.load(key)
        if not core.same_target(canary.spec, status.target):
            return rejected("the mesh repo holds a release that has not started yet; wait for it, then undo")
        now = undo_mod.serving(canary.spec, status)
        if isinstance(now, str):
            return rejected(now)
        mesh = self.parts.mesh
        service = canary.spec.service.name
        async with self._clones.exclusive():
            await self.parts.sync()  # the newest mesh history and zone definitions
            history = await mesh.log(2000)
            before = undo_mod.previous(history, key, now)
            if before is None:
                return rejected(f"nothing to go back to: the mesh repo records no promotion to {now} "
                                "after another version")
            version = before.version
            missing = []
            for z in before.zones:
                zrepo = self.parts.repos[z]
                under = zrepo.path

                def defined(r: Repo, under: str = under) -> bool:
                    return releases.definition(r, under, service, version) is not None

                if not await zrepo.call(defined):
                    missing.append(z)
            if missing:
                return rejected(f"{before} cannot come back: the repo of zone(s) {', '.join(missing)} no longer "
                                f"defines version {before.version} under spec.versions")
            path = self.paths[key]

            def edit(repo: Any) -> list[str]:
                text = repo.read(path) or ""
                repo.write(path, undo_mod.rewrite(text, key, now, before, skip_analysis))
                return [path]

            how = "skipping analysis" if skip_analysis else "through analysis"
            message = (f"{service}: undo {now} -> {before} ({how})\n\n"
                       "A new rollout back to the previously promoted version.\n")
            sha = await mesh.call(lambda r: r.commit_and_push(edit, message,
                                                              author="fedctl rollout undo <operator@localhost>"))
        log.info("%s: undo: new rollout %s -> %s committed (%s, %s)", key, now, before, (sha or "")[:12], how)
        await self.discover()
        self.wake(key)
        return {**base, "state": "accepted",
                "message": f"new rollout {now} -> {before} ({how}) committed to the mesh repo as {(sha or '?')[:12]}"}

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
            await self.parts.close()
            self.lock.release()

    def stop(self) -> None:
        self._stop.set()
        for event in self._wake.values():
            event.set()

    # -- views for the API ----------------------------------------------------------------------

    def _spec_of(self, key: str, canary: FederatedCanary | None, status: RolloutStatus) -> Any:
        """The spec the stored status belongs to. Right after a new release is discovered the
        status still describes the previous rollout: pair it with that rollout's spec (the one its
        last tick ran, else one rebuilt from its stored target), never with the new one."""
        if canary is None or status.target is None or core.same_target(canary.spec, status.target):
            return canary.spec if canary is not None else None
        report = self.last.get(key)
        if report is not None and report.observations is not None and \
                core.same_target(report.observations.spec, status.target):
            return report.observations.spec
        t = RolloutTarget.parse(status.target)
        if t is None or not t.primary_zones or not t.canary_zones:
            return None
        update: dict[str, Any] = {"primary": Placement(version=t.primary_version, zones=list(t.primary_zones)),
                                  "canary": Placement(version=t.canary_version, zones=list(t.canary_zones))}
        if set(t.canary_zones) != set(canary.spec.canary.zones):
            update["zone_weights"] = None
        return canary.spec.model_copy(update=update)

    async def rollout(self, key: str) -> dict[str, Any]:
        canary = self.canaries.get(key)
        status = await self.store.load(key)
        report = self.last.get(key)
        spec = self._spec_of(key, canary, status)
        up_to_date = canary is not None and core.same_target(canary.spec, status.target)
        zones: dict[str, Any] = {}
        if report is not None and report.observations is not None:
            obs = report.observations
            for z, step in obs.applied.items():
                r = obs.readiness.get(z)
                zones[z] = {"appliedStep": step, "primaryReady": r.primary if r else None,
                            "canaryReady": r.canary if r else None,
                            "reason": self.waiting.get(key, {}).get(z, "")}
        weights: dict[str, int] = {}
        if spec is not None:
            weights = {str(s): w for s, w in sorted(subsets_for(spec, status.canary_weight, self.fleet).items())}
        return {
            "rollout": key,
            "phase": status.phase.value,
            # Why the rollout's file in the mesh repo is invalid (it runs its last valid spec), else None.
            "invalid": self.invalid.get(key),
            "paused": status.paused,
            "primary": spec.primary.model_dump(by_alias=True) if spec else None,
            "canary": spec.canary.model_dump(by_alias=True) if spec else None,
            "canaryWeight": status.canary_weight,
            "weights": weights,
            "step": status.step,
            "failedChecks": status.failed_checks,
            "threshold": spec.analysis.threshold if spec else None,
            "message": status.message,
            "zones": zones,
            "checks": [c.for_storage() for c in status.last_checks],
            "pendingCommand": await self.commands.peek(key),
            "commandNotCleared": self.uncleared[key][1] if key in self.uncleared else None,
            "workerRestarts": self.restarts.get(key, 0),
            "target": status.target,
            "upToDate": up_to_date,
            # The release found in the mesh repo that this status does not describe yet (it starts
            # at the worker's next tick), else None.
            "nextRelease": None if up_to_date or canary is None else {
                "primary": canary.spec.primary.model_dump(by_alias=True),
                "canary": canary.spec.canary.model_dump(by_alias=True)},
            "checksum": canary.spec.checksum if canary else None,
        }

    async def history(self, service: str, limit: int = 1000) -> list[dict[str, Any]]:
        """Every step of ``service``'s rollouts from the hub's own clones (no new clone)."""
        from federation.gitops import history as hist

        async with self._clones.shared():
            repos = {name: r.repo for name, r in self.parts.repos.items()}
            records = await asyncio.to_thread(hist.collect, repos, service, limit)
        return [r.for_output() for r in records]

    async def analysis_now(self, key: str) -> dict[str, Any]:
        """The canary's metrics queried now and judged, and which canary zone's Prometheus is broken."""
        from federation.core import analysis as core_analysis

        canary = self.canaries[key]
        analyzer = self.parts.analyzer
        zones = canary.spec.canary.zones
        samples, health = await asyncio.gather(
            analyzer.collect(canary.spec, canary.metadata.namespace),
            asyncio.gather(*[analyzer.clients[z].healthy() for z in zones]))
        verdict = core_analysis.judge(canary.spec, samples)
        by = {(x.metric, x.zone): x for x in samples}
        return {"rollout": key, "canary": canary.spec.canary.model_dump(by_alias=True),
                "checks": [{**c.for_storage(), "requests": getattr(by.get((c.metric, c.zone)), "requests", None)}
                           for c in verdict.checks],
                "broken": {z: why for z, why in zip(zones, health, strict=True) if why}}

    async def rollouts(self) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*[self.rollout(k) for k in sorted(self.canaries)]))
