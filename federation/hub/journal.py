"""What the hub keeps of each tick for people: the steps a rollout took (weights per subset and
the checks that justified each), the events it emitted, each webhook's last answer — the web
pages' memory of the current rollout (the last ``STEPS_KEPT``; Git keeps everything) — and why
each zone has not applied the current step, logged once when it appears or changes; and
``Changes``, what the pages' live stream (``hub.webstream``) waits on.
Callers: ``hub.service`` after each tick and each discovery.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

from federation.core.state import Emit, SetWeights
from federation.hub import reasons
from federation.hub.worker import TickReport

log = logging.getLogger("federation.hub")

STEPS_KEPT = 500

Log = dict[str, collections.deque[dict[str, Any]]]


def record(steps: Log, hook_answers: dict[str, dict[str, dict[str, Any]]], events: Log, report: TickReport) -> None:
    """Each step a tick set (a new target starts the log again), each event it emitted, and each
    webhook's last answer."""
    key, st = report.key, report.decision.status
    taken = steps.setdefault(key, collections.deque(maxlen=STEPS_KEPT))
    if taken and taken[-1]["target"] != st.target:
        taken.clear()
    if report.observations is not None:
        answers = hook_answers.setdefault(key, {})
        for hook, res in report.observations.hooks.items():
            answers[hook] = {"ok": res.ok, "message": res.message, "at": report.now}
    seen = events.setdefault(key, collections.deque(maxlen=STEPS_KEPT))
    if report.error:
        seen.append({"at": report.now, "severity": "error", "reason": "TickFailed", "message": report.error})
    for a in report.decision.actions:
        if isinstance(a, Emit):
            seen.append({"at": report.now, "severity": a.severity, "reason": a.reason, "message": a.message})
        if isinstance(a, SetWeights):
            taken.append({"target": st.target, "step": a.step, "stage": a.stage.value, "at": report.now,
                          "canaryWeight": a.canary_weight, "weights": {str(sub): w for sub, w in a.weights},
                          "checks": [c.for_storage() for c in a.checks]})


def explain(before: dict[str, str], report: TickReport) -> dict[str, str]:
    """Zone -> why it is not at the current step; logged when a reason appears or changes, and
    when the zone catches up. A paused rollout (or a tick that observed nothing) keeps ``before``;
    a tick that set a new step logs none (no zone could have applied it when it observed them)."""
    obs = report.observations
    status = report.decision.status
    if obs is None or status.paused:
        return before
    if status.step != report.status.step and not report.error:
        now: dict[str, str] = {}  # this tick set the step: what it observed predates it (the next tick tells)
    else:
        now = reasons.reasons(status.step, dict(obs.applied), report.zones, report.error) if status.step else {}
    for z, why in now.items():
        if before.get(z) != why:
            log.warning("%s: zone %s has not applied step %d: %s", report.key, z, status.step, why)
    for z in before.keys() - now.keys():
        log.info("%s: zone %s reached step %s", report.key, z, obs.applied.get(z))
    return now


class Changes:
    """A sequence number bumped when what the pages show changes — a rollout's phase, step, weights,
    pause, message, analysis, zones' applied steps or events (after a tick), or the rollouts and
    problems discovery found (key ``""``) — and an event that wakes every waiter at once. Ticks that
    change nothing shown do not bump it."""

    def __init__(self, kept: int = 1000) -> None:
        self.seq = 0
        self.closed = False
        self._shown: dict[str, Any] = {}
        self._recent: collections.deque[tuple[int, str]] = collections.deque(maxlen=kept)
        self._event = asyncio.Event()

    def tick(self, report: TickReport, events: Log) -> None:
        st, seen = report.decision.status, events.get(report.key, ())
        applied = dict(report.observations.applied) if report.observations is not None else None
        self.note(report.key, (st.phase, st.step, st.canary_weight, st.paused, st.message, st.failed_checks,
                               st.last_checks, st.target, st.converged_at is None, applied, report.error,
                               len(seen), seen[-1]["at"] if seen else None))

    def note(self, key: str, shown: Any) -> None:
        """``shown``: what the pages show of ``key`` now; a change bumps the sequence."""
        if self._shown.get(key, self) != shown:
            self._shown[key] = shown
            self.seq += 1
            self._recent.append((self.seq, key))
            woken, self._event = self._event, asyncio.Event()
            woken.set()

    def since(self, seq: int) -> list[str] | None:
        """The keys changed after ``seq``; None when that is older than what is kept (anything may have)."""
        if seq < self.seq - len(self._recent) or seq > self.seq:
            return None
        return sorted({k for n, k in self._recent if n > seq})

    async def wait(self, seq: int, timeout: float) -> int:
        """The sequence once it moved past ``seq``, or after ``timeout`` seconds, or at close."""
        if self.seq == seq and not self.closed:
            event = self._event
            try:
                await asyncio.wait_for(event.wait(), timeout)
            except TimeoutError:
                pass
        return self.seq

    def close(self) -> None:
        self.closed = True
        self._event.set()
