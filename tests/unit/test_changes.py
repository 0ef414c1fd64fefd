"""``journal.Changes``, what the web pages' live stream waits on: a tick that changes what the pages
show bumps the sequence and wakes waiters at once; a tick that changes nothing shown does not;
``since`` names what changed, or None when asked about more than it keeps."""

from __future__ import annotations

import asyncio

from federation.core.state import Decision, Phase, RolloutStatus
from federation.hub import journal
from federation.hub.worker import TickReport

KEY = "shop/frontend"


def report(now: float, **status: object) -> TickReport:
    st = RolloutStatus(phase=Phase.PROGRESSING, target="v1@vms->v2@eks", **status)  # type: ignore[arg-type]
    return TickReport(KEY, now, st, Decision(st), None)


def test_only_what_the_pages_show_bumps_the_sequence():
    async def go() -> None:
        changes, events = journal.Changes(kept=3), {}
        changes.tick(report(1.0, step=1, canary_weight=2000), events)
        assert changes.seq == 1 and changes.since(0) == [KEY]
        waiter = asyncio.create_task(changes.wait(1, 30))
        changes.tick(report(2.0, step=1, canary_weight=2000, next_analysis_at=9.0), events)  # nothing shown moved
        await asyncio.sleep(0)
        assert changes.seq == 1 and not waiter.done()
        changes.tick(report(3.0, step=2, canary_weight=4000), events)
        assert await asyncio.wait_for(waiter, 1) == 2
        changes.tick(report(4.0, step=2, canary_weight=4000, paused=True), events)
        changes.note("", (["shop/frontend"], [], {}, {}, {}))
        assert changes.seq == 4 and changes.since(2) == ["", KEY] and changes.since(4) == []
        for n in range(3):
            changes.note("", n)
        assert changes.since(2) is None  # older than the 3 kept: anything may have changed
        assert await changes.wait(changes.seq, 0.01) == changes.seq  # times out: the same sequence
        changes.close()
        assert await asyncio.wait_for(changes.wait(changes.seq, 30), 1) == changes.seq

    asyncio.run(go())
