"""What the API shows and does for a person: one rollout's view (its stored step paired with the spec
it belongs to, per-zone state and reasons, pending and stuck commands), the list, history from the
hub's own clones, the canary's metrics judged now, operator commands and undo. Functions over a
running ``Hub``; no state of their own. Callers: ``hub.api``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from federation.core import analysis as core_analysis
from federation.core import decide as core
from federation.core.spec import FederatedCanary
from federation.core.state import RolloutStatus
from federation.core.weights import subsets_for
from federation.gitops import history as hist
from federation.gitops import releases
from federation.gitops.repo import Repo
from federation.hub import undo as undo_mod
from federation.hub.service import Hub

log = logging.getLogger("federation.hub")


async def command(hub: Hub, key: str, command: str, wait: float) -> dict[str, Any]:
    """Queue ``command`` and wait up to ``wait`` seconds for the tick that consumes it."""
    return await hub.desk.submit(key, command, wait, lambda: hub.wake(key))


async def undo(hub: Hub, key: str, *, skip_analysis: bool = False) -> dict[str, Any]:
    """A new rollout back to the previously promoted version (see ``hub.undo``), committed to
    the mesh repo; the answer names the commit, or why there is nothing to go back to."""

    base = {"rollout": key, "command": "undo"}

    def rejected(why: str) -> dict[str, Any]:
        log.info("%s: undo rejected: %s", key, why)
        return {**base, "state": "rejected", "message": why}

    canary = hub.canaries[key]
    status = await hub.store.load(key)
    if not core.same_target(canary.spec, status.target):
        return rejected("the mesh repo holds a release that has not started yet; wait for it, then undo")
    now = undo_mod.serving(canary.spec, status)
    if isinstance(now, str):
        return rejected(now)
    mesh = hub.parts.mesh
    service = canary.spec.service.name
    async with hub.clones.exclusive():
        await hub.parts.sync()  # the newest mesh history and zone definitions
        history = await mesh.log(2000)
        before = undo_mod.previous(history, key, now)
        if before is None:
            return rejected(f"nothing to go back to: the mesh repo records no promotion to {now} "
                            "after another version")
        version = before.version
        missing = []
        for z in before.zones:
            zrepo = hub.parts.repos[z]
            under = zrepo.path

            def defined(r: Repo, under: str = under) -> bool:
                return releases.definition(r, under, service, version) is not None

            if not await zrepo.call(defined):
                missing.append(z)
        if missing:
            return rejected(f"{before} cannot come back: the repo of zone(s) {', '.join(missing)} no longer "
                            f"defines version {before.version} under spec.versions")
        path = hub.paths[key]

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
    await hub.discover()
    hub.wake(key)
    return {**base, "state": "accepted",
            "message": f"new rollout {now} -> {before} ({how}) committed to the mesh repo as {(sha or '?')[:12]}"}


def spec_of(hub: Hub, key: str, canary: FederatedCanary | None, status: RolloutStatus) -> Any:
    """The spec the stored status belongs to. Right after a new release is discovered the
    status still describes the previous rollout: pair it with that rollout's spec (the one its
    last tick ran, else one rebuilt from its stored target), never with the new one."""
    if canary is None or status.target is None or core.same_target(canary.spec, status.target):
        return canary.spec if canary is not None else None
    report = hub.last.get(key)
    if report is not None and report.observations is not None and \
            core.same_target(report.observations.spec, status.target):
        return report.observations.spec
    return core.spec_for_target(canary.spec, status.target)

async def rollout(hub: Hub, key: str) -> dict[str, Any]:
    canary = hub.canaries.get(key)
    status = await hub.store.load(key)
    report = hub.last.get(key)
    spec = spec_of(hub, key, canary, status)
    up_to_date = canary is not None and core.same_target(canary.spec, status.target)
    zones: dict[str, Any] = {}
    if report is not None and report.observations is not None:
        obs = report.observations
        for z, step in obs.applied.items():
            r = obs.readiness.get(z)
            zones[z] = {"appliedStep": step, "primaryReady": r.primary if r else None,
                        "canaryReady": r.canary if r else None,
                        "reason": hub.waiting.get(key, {}).get(z, "")}
    weights: dict[str, int] = {}
    if spec is not None:
        weights = {str(s): w for s, w in sorted(subsets_for(spec, status.canary_weight, hub.fleet).items())}
    return {
        "rollout": key,
        "phase": status.phase.value,
        # Why the rollout's file in the mesh repo is invalid (it runs its last valid spec), else None.
        "invalid": hub.invalid.get(key),
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
        "pendingCommand": await hub.commands.peek(key),
        "commandNotCleared": hub.desk.not_cleared(key),
        "workerRestarts": hub.restarts.get(key, 0),
        "target": status.target,
        "upToDate": up_to_date,
        # The release found in the mesh repo that this status does not describe yet (it starts
        # at the worker's next tick), else None.
        "nextRelease": None if up_to_date or canary is None else {
            "primary": canary.spec.primary.model_dump(by_alias=True),
            "canary": canary.spec.canary.model_dump(by_alias=True)},
        "checksum": canary.spec.checksum if canary else None,
    }

async def history(hub: Hub, service: str, limit: int = 1000) -> list[dict[str, Any]]:
    """Every step of ``service``'s rollouts from the hub's own clones (no new clone)."""

    async with hub.clones.shared():
        repos = {name: r.repo for name, r in hub.parts.repos.items()}
        records = await asyncio.to_thread(hist.collect, repos, service, limit)
    return [r.for_output() for r in records]

async def analysis_now(hub: Hub, key: str) -> dict[str, Any]:
    """The canary's metrics queried now and judged, and which canary zone's Prometheus is broken."""

    canary = hub.canaries[key]
    analyzer = hub.parts.analyzer
    zones = canary.spec.canary.zones
    samples, health = await asyncio.gather(
        analyzer.collect(canary.spec, canary.metadata.namespace, name=canary.metadata.name),
        asyncio.gather(*[analyzer.clients[z].healthy() for z in zones]))
    verdict = core_analysis.judge(canary.spec, samples)
    by = {(x.metric, x.zone): x for x in samples}
    return {"rollout": key, "canary": canary.spec.canary.model_dump(by_alias=True),
            "checks": [{**c.for_storage(), "requests": getattr(by.get((c.metric, c.zone)), "requests", None)}
                       for c in verdict.checks],
            "broken": {**{x.zone: f"{x.metric}: {x.reason}" for x in samples if x.broken and x.zone},
                       **{z: why for z, why in zip(zones, health, strict=True) if why}}}

async def rejected(hub: Hub, key: str) -> dict[str, Any]:
    """A rollout whose file is invalid and that this hub does not run (never valid here, a second
    canary for a service, or no valid version in Git after a restart): phase Invalid with the
    reason, and where it stopped if it ran before (its traffic stays there until the file is fixed)."""
    status = await hub.store.load(key)
    why = hub.rejected[key]
    return {"rollout": key, "phase": "Invalid", "invalid": why, "paused": status.paused, "primary": None,
            "canary": None, "canaryWeight": status.canary_weight, "weights": {}, "step": status.step,
            "failedChecks": status.failed_checks, "threshold": None, "message": f"not run: {why}", "zones": {},
            "checks": [], "pendingCommand": None, "commandNotCleared": None, "workerRestarts": 0,
            "target": status.target, "upToDate": False, "nextRelease": None, "checksum": None}

async def rollouts(hub: Hub) -> list[dict[str, Any]]:
    return list(await asyncio.gather(*[rollout(hub, k) for k in sorted(hub.canaries)],
                                     *[rejected(hub, k) for k in sorted(hub.rejected)]))
