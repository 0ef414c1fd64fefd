"""The worker observes what the decision reads: gates and metrics are asked for by ``decide_or_ask``.

Two regressions of the old ``needs()`` prediction (which drifted from ``decide``): a retried
rollout behind an open confirm-rollout gate went to Waiting with a spurious event, and a resumed
rollout analysed without metrics (a failed check; with threshold 1, a healthy canary rolled back).
Real worker and core, the hub's parts in memory, the gate a live loopback HTTP receiver.
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path

from federation import specfiles
from federation.core import spec as specs
from federation.core.decide import target_of
from federation.core.state import Emit, Phase, RolloutStatus
from federation.hub.store import MemoryStore
from federation.hub.worker import RolloutWorker
from tests.httpstub import Receiver
from tests.hubfakes import MemoryParts
from tests.unit.builders import BASE_CANARY

ROOT = Path(__file__).resolve().parents[2]
KEY = "shop/frontend"


def fleet() -> specs.Fleet:
    return specfiles.load_one(ROOT / "clusters" / "fleet.yaml", specs.Fleet)


def federated(**analysis: object) -> specs.FederatedCanary:
    doc = copy.deepcopy(BASE_CANARY)
    doc["metadata"]["namespace"] = "shop"
    doc["spec"]["analysis"].update(analysis)
    return specs.FederatedCanary.model_validate(doc)


def tick(canary: specs.FederatedCanary, status: RolloutStatus, command: str):
    parts = MemoryParts(fleet(), [canary])
    parts.applied[KEY] = status.step
    store = MemoryStore()

    async def run():
        await store.save(KEY, status)
        return await RolloutWorker(KEY, parts, store, clock=lambda: 10_000.0).tick(canary, command)  # type: ignore[arg-type]

    return asyncio.run(run()), parts


def test_retry_behind_an_open_confirm_rollout_gate_starts_without_waiting():
    gate = Receiver([])  # open: answers 200
    try:
        canary = federated(webhooks=[{"name": "approve", "type": "confirm-rollout", "url": gate.url}])
        failed = RolloutStatus(phase=Phase.FAILED, step=6, target=target_of(canary.spec), primary_version="v1",
                               canary_version="v2", failed_checks=2, message="rolled back: checks failed")
        report, _ = tick(canary, failed, "retry")
        st = report.decision.status
        assert not report.error
        assert st.phase is Phase.PROGRESSING and st.step == 7 and st.canary_weight == 0
        assert [a.reason for a in report.decision.actions if isinstance(a, Emit)] == ["Retry", "Started"]
        assert len(gate.bodies) == 1  # the gate was asked once, on the tick that read it
    finally:
        gate.close()


def test_resume_analyses_with_metrics_and_does_not_roll_back_a_healthy_canary():
    canary = federated(threshold=1)
    paused = RolloutStatus(phase=Phase.PROGRESSING, step=5, target=target_of(canary.spec), primary_version="v1",
                           canary_version="v2", canary_weight=2000, pre_rollout_passed=True, paused=True,
                           step_started_at=9_000.0, converged_at=9_100.0, next_analysis_at=9_160.0)
    report, parts = tick(canary, paused, "resume")
    st = report.decision.status
    assert not report.error
    assert st.phase is Phase.PROGRESSING and not st.paused and st.failed_checks == 0
    assert st.canary_weight == 4000 and st.step == 6  # the analysis passed and stepped up
    assert parts.analyzer.calls == 1  # type: ignore[attr-defined]
    assert report.observations is not None and report.observations.metrics


def test_a_failing_hook_with_mute_alert_sends_no_alert_but_still_its_event(monkeypatch):
    hook, sink = Receiver(status=lambda name: 500 if name == "load" else 200), Receiver()
    monkeypatch.setenv("ALERT_URL", f"{sink.base}/alert")
    try:
        f = fleet()
        f = f.model_copy(update={"spec": f.spec.model_copy(update={"alert_providers": [
            specs.AlertProvider(name="ops", type="generic", url_env="ALERT_URL")]})})
        sent = {}
        for mute in (True, False):
            canary = federated(threshold=5, alerts=[{"name": "ops", "severity": "info", "providerRef": {"name": "ops"}}],
                               webhooks=[{"name": "load", "type": "rollout", "url": f"{hook.base}/load", "muteAlert": mute},
                                         {"name": "events", "type": "event", "url": f"{hook.base}/events"}])
            due = RolloutStatus(phase=Phase.PROGRESSING, step=5, target=target_of(canary.spec), primary_version="v1",
                                canary_version="v2", canary_weight=2000, pre_rollout_passed=True,
                                step_started_at=9_000.0, converged_at=9_100.0, next_analysis_at=9_160.0)
            parts = MemoryParts(f, [canary])
            parts.applied[KEY] = due.step
            store = MemoryStore()

            async def run(canary: specs.FederatedCanary = canary, parts: MemoryParts = parts,
                          store: MemoryStore = store, due: RolloutStatus = due):
                await store.save(KEY, due)
                return await RolloutWorker(KEY, parts, store, clock=lambda: 10_000.0).tick(canary)  # type: ignore[arg-type]

            report = asyncio.run(run())
            assert report.decision.status.failed_checks == 1 and not report.error
            sent[mute] = [b["reason"] for b in sink.calls["alert"]]
            sink.calls["alert"].clear()
        assert sent == {True: [], False: ["FailedCheck"]}
        events = [b["metadata"] for b in hook.calls["events"]]
        assert [e["eventType"] for e in events] == ["Warning", "Warning"]  # the event goes either way
        assert all("rollout hook 'load' HTTP 500" in e["eventMessage"] for e in events)
    finally:
        hook.close()
        sink.close()


class _Deployed:
    """A zone where only ``versions`` run (ready 100), any other version not at all (ready 0)."""

    def __init__(self, name: str, applied: dict[str, int], versions: set[str]) -> None:
        self.name, self.applied, self.versions, self.pull_request = name, applied, versions, False

    async def observe(self, canary: specs.FederatedCanary, step: int) -> object:
        versions = self.versions

        class Seen:
            def applied_step(self) -> int | None:
                return self_applied.get(canary.key)

            def ready_percent(self, service: str, version: str) -> float:
                return 100.0 if version in versions else 0.0

            def failed(self, service: str, version: str) -> str:
                return ""

            def reasons(self) -> list[str]:
                return []

        self_applied = self.applied
        return Seen()


def test_a_release_pushed_while_the_last_one_finalises_lets_it_finish_then_starts():
    """Found by the chaos soak: the finalising step waited for the *new* canary version to be
    ready — deployed nowhere until the new rollout starts — and never ended."""
    old = federated()
    doc = old.model_dump(by_alias=True, exclude_none=True)
    doc["spec"]["primary"] = {"version": "v2", "zones": ["eks", "onprem"]}
    doc["spec"]["canary"] = {"version": "v3", "zones": ["eks"]}
    new = specs.FederatedCanary.model_validate(doc)
    finalising = RolloutStatus(phase=Phase.FINALISING, step=8, target=target_of(old.spec), primary_version="v1",
                               canary_version="v2", canary_weight=10_000, pre_rollout_passed=True,
                               step_started_at=9_900.0)
    parts = MemoryParts(fleet(), [new])
    parts.applied[KEY] = 8
    parts.zones = {z: _Deployed(z, parts.applied, {"v1", "v2"}) for z in parts.zones}  # type: ignore[misc]
    store = MemoryStore()

    async def run() -> list[RolloutStatus]:
        await store.save(KEY, finalising)
        worker = RolloutWorker(KEY, parts, store, clock=lambda: 10_000.0)  # type: ignore[arg-type]
        return [(await worker.tick(new)).decision.status for _ in range(4)]

    seen = asyncio.run(run())
    done = [st for st in seen if st.phase is Phase.SUCCEEDED]
    assert done and done[0].primary_version == "v2" and done[0].target == target_of(old.spec), seen
    assert seen[-1].target == target_of(new.spec) and seen[-1].phase is not Phase.FINALISING, seen[-1]


def test_after_a_step_fails_the_next_tick_resyncs_from_git_before_deciding_again():
    """Found by the chaos soak: a step pushed to some zone repos before a Git failure was decided
    anew on the next tick — a new release had arrived — and its step number then carried other
    values in Git (the executor refused it on every tick, forever). After a failed step the worker
    resyncs from Git first (adopting and completing what was committed) and only then decides."""
    from federation.core.errors import TemporaryError

    canary = federated()
    status = RolloutStatus(phase=Phase.PROGRESSING, step=5, target=target_of(canary.spec), primary_version="v1",
                           canary_version="v2", canary_weight=2000, pre_rollout_passed=True,
                           step_started_at=9_000.0, converged_at=9_100.0, next_analysis_at=9_160.0)
    parts = MemoryParts(fleet(), [canary])
    parts.applied[KEY] = 5
    store = MemoryStore()
    resyncs: list[int] = []
    failures = [TemporaryError("git push to zone vms failed: connection reset")]
    real_apply = parts.executor.apply_step

    async def flaky_apply(c: specs.FederatedCanary, action: object) -> object:
        if failures:
            raise failures.pop()
        return await real_apply(c, action)  # type: ignore[arg-type]

    parts.executor.apply_step = flaky_apply  # type: ignore[method-assign]

    class Worker(RolloutWorker):
        async def resync(self, c: specs.FederatedCanary, st: RolloutStatus, now: float) -> RolloutStatus:
            resyncs.append(st.step)
            return st

    async def run() -> list[str | None]:
        await store.save(KEY, status)
        w = Worker(KEY, parts, store, clock=lambda: 10_000.0)  # type: ignore[arg-type]
        return [(await w.tick(canary)).error for _ in range(3)]

    errors = asyncio.run(run())
    assert errors[0] and "connection reset" in errors[0] and not errors[1] and not errors[2], errors
    assert resyncs == [5, 5], resyncs  # at the start, and again after the failed step; not on every tick
