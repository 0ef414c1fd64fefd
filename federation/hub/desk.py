"""The operator's commands between the API and the rollout workers.

The API queues a command (pause, resume, promote, abort, retry) in the command store and waits for
the tick that consumes it; the worker takes the pending command at its next tick, and once the tick
ran the command is cleared with its answer (accepted, or rejected with the reason) so the API — on
this replica or another — can tell the operator what happened. A command applied but not cleared
(the store refused the delete) is never given to the core again: a repeated promote or pause would
hold the rollout where it is. Callers: ``hub.service`` (workers) and ``hub.views`` (the API).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from federation.core.errors import FederationError
from federation.core.state import Phase, RolloutStatus
from federation.core.weights import as_percent

log = logging.getLogger("federation.hub")


def answer_for(command: str, before: RolloutStatus, after: RolloutStatus) -> dict[str, Any]:
    """Whether the tick that consumed ``command`` did what it asks, in the operator's words."""
    where = f"step {after.step}, canary {as_percent(after.canary_weight)}"
    done = (Phase.PROMOTING, Phase.FINALISING, Phase.SUCCEEDED)
    ok = {
        "pause": after.paused and not before.paused,
        "resume": before.paused and not after.paused,
        "abort": after.phase is Phase.FAILED and before.phase is not Phase.FAILED,
        "retry": before.phase is Phase.FAILED and after.phase is not Phase.FAILED,
        "promote": after.phase in done and before.phase not in done,
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


class CommandDesk:
    """``store``: ``hub.commands.Commands`` (files) or ``ConfigMapCommands`` (any replica takes the call)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        # Commands applied but not cleared: key -> (identity, view shown in the rollout's status).
        self.uncleared: dict[str, tuple[str, dict[str, str]]] = {}
        self._answered: dict[str, asyncio.Event] = {}

    async def pending(self, key: str) -> dict[str, Any] | None:
        """The command for this tick: a pending one not applied yet (clearing a stuck one is
        tried again instead of applying it twice)."""
        try:
            got: dict[str, Any] | None = await self.store.pending(key)
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

    async def consumed(self, key: str, pending: dict[str, Any], before: RolloutStatus, after: RolloutStatus) -> None:
        """The tick that was given ``pending`` ran: answer it, clear it, wake whoever waits."""
        answer = answer_for(pending["command"], before, after)
        log.info("%s: %s %s: %s", key, pending["command"], answer["state"], answer["message"])
        await self._clear(key, pending, answer)
        self._answered.setdefault(key, asyncio.Event()).set()

    async def _clear(self, key: str, pending: dict[str, Any], answer: dict[str, Any] | None) -> None:
        command = pending["command"]
        try:
            await self.store.done(key, pending.get("id"), answer)
        except FederationError as exc:
            if key not in self.uncleared:
                log.error("%s: command %s was applied but cannot be cleared (%s); it will not be applied "
                          "again, and clearing is retried at every tick", key, command, exc)
            self.uncleared[key] = (_ident(pending), {"command": command, "error": str(exc)})
            return
        if key in self.uncleared:
            log.info("%s: command %s cleared", key, command)
        self.uncleared.pop(key, None)

    def not_cleared(self, key: str) -> dict[str, str] | None:
        return self.uncleared[key][1] if key in self.uncleared else None

    async def submit(self, key: str, command: str, wait: float, wake: Any) -> dict[str, Any]:
        """Queue ``command`` for ``key``, ``wake()`` its worker, and wait up to ``wait`` seconds for
        the tick that consumes it: the answer (accepted or rejected), else state queued/pending."""
        cid = await self.store.put(key, command)
        wake()
        base = {"rollout": key, "command": command, "id": cid}
        if wait <= 0:
            return {**base, "state": "queued", "message": "queued for the rollout's worker"}
        deadline = time.monotonic() + wait
        while True:
            answered = self._answered.setdefault(key, asyncio.Event())
            answered.clear()
            found = await self.store.answer(key, cid)
            if found is not None:
                return {**base, "state": found["state"], "message": found["message"]}
            left = deadline - time.monotonic()
            if left <= 0:
                return {**base, "state": "pending",
                        "message": f"not yet consumed after {wait:g}s (the rollout's worker is busy, or another "
                                   "replica runs it); it stays queued"}
            with contextlib.suppress(asyncio.TimeoutError):  # another replica answers through the store
                await asyncio.wait_for(answered.wait(), timeout=min(left, 0.5))
