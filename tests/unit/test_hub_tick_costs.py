"""A hub tick does no work that nothing asked for: a tick that changes nothing writes no status
(a rollout waiting for its next analysis), and a rollout with no operator command reads no command
file. At 10,000 rollouts both were most of a tick (``tests/benchmarks/test_bench_hub_scale.py``).
Real worker and core, the hub's parts in memory; a real file command store."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from federation.core.state import RolloutStatus
from federation.hub import journal
from federation.hub.commands import Commands
from federation.hub.store import FileStore, MemoryStore
from federation.hub.worker import RolloutWorker
from tests import hubfakes

KEY = "shop/frontend"


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.saves = 0

    async def save(self, key: str, status: RolloutStatus) -> None:
        self.saves += 1
        await super().save(key, status)


def test_a_tick_that_changes_nothing_saves_nothing():
    canary = hubfakes.canary(interval="30s")
    parts = hubfakes.MemoryParts(hubfakes.fleet(), [canary])
    store = CountingStore()
    now = [10_000.0]

    async def run() -> tuple[int, int]:
        worker = RolloutWorker(canary.key, parts, store, clock=lambda: now[0])
        changed = unchanged = 0
        for _ in range(300):  # one tick a second, through analyses (every 30 s) and steps
            now[0] += 1
            report = await worker.tick(canary)
            assert not report.error
            if report.decision.status != report.status:
                changed += 1
            else:
                unchanged += 1
            assert await store.load(canary.key) == report.decision.status
        return changed, unchanged

    changed, unchanged = asyncio.run(run())
    assert store.saves == changed and changed > 5 and unchanged > 100, (store.saves, changed, unchanged)


def test_a_worker_saves_its_first_tick_even_when_unchanged():
    """Discovery tells a rollout this hub ran before by its stored status."""
    canary = hubfakes.canary(interval="1m")
    parts = hubfakes.MemoryParts(hubfakes.fleet(), [canary])
    store = CountingStore()

    async def run() -> None:
        worker = RolloutWorker(canary.key, parts, store, clock=lambda: 10_000.0)
        while (report := await worker.tick(canary)).decision.status != report.status:
            pass  # the same instant: until a tick changes nothing
        store.saves = 0
        again = await RolloutWorker(canary.key, parts, store, clock=lambda: 10_000.0).tick(canary)
        assert again.decision.status == again.status and store.saves == 1

    asyncio.run(run())


def test_no_command_file_is_read_for_a_rollout_without_a_command(tmp_path: Path):
    Commands(tmp_path)._put("shop/waiting", {"command": "pause", "id": "old", "at": 1.0})  # from before a restart
    store = Commands(tmp_path)
    reads: list[Path] = []
    real_read = store._read

    def counted(path: Path):  # type: ignore[no-untyped-def]
        reads.append(path)
        return real_read(path)

    store._read = counted  # type: ignore[method-assign]

    async def run() -> None:
        assert await store.pending(KEY) is None
        assert reads == []
        assert (await store.pending("shop/waiting") or {}).get("id") == "old"  # a restart keeps it
        cid = await store.put(KEY, "abort")
        assert (await store.pending(KEY) or {}).get("id") == cid
        await store.done(KEY, cid, {"command": "abort", "state": "accepted", "message": "rolled back"})
        n = len(reads)
        assert await store.pending(KEY) is None and len(reads) == n
        assert (await store.answer(KEY, cid) or {}).get("state") == "accepted"

    asyncio.run(run())


def test_one_zone_failing_to_answer_leaves_the_zones_unobserved_and_the_mesh_observed():
    """Zones and the mesh route are observed in one gather: a zone that raises does not stop the
    others nor the mesh route being asked, and the tick goes on without zone figures."""
    canary = hubfakes.canary()
    parts = hubfakes.MemoryParts(hubfakes.fleet(), [canary])
    asked: list[str] = []

    class Broken(hubfakes.MemoryZone):
        async def observe(self, c, step):  # type: ignore[no-untyped-def]
            asked.append(self.name)
            raise OSError("connection reset")

    parts.zones["onprem"] = Broken("onprem", parts.applied)
    parts.applied[canary.key] = 3

    async def run():  # type: ignore[no-untyped-def]
        return await RolloutWorker(canary.key, parts, MemoryStore(), clock=lambda: 10_000.0).tick(canary)

    report = asyncio.run(run())
    assert asked == ["onprem"] and report.zones == {} and not report.error
    assert report.observations is not None and report.observations.applied["mesh"] == 3
    assert all(step is None for z, step in report.observations.applied.items() if z != "mesh")


def test_a_tick_reads_no_state_file_once_the_status_is_known(tmp_path: Path):
    """One hub per state directory writes its files: what it read or wrote is what is there."""
    FileStore(tmp_path).write(KEY, RolloutStatus(step=4))  # from before a restart
    store = FileStore(tmp_path)
    reads: list[str] = []
    real_read = store.read

    def counted(key: str) -> RolloutStatus:
        reads.append(key)
        return real_read(key)

    store.read = counted  # type: ignore[method-assign]

    async def run() -> None:
        assert (await store.load(KEY)).step == 4 and (await store.load(KEY)).step == 4
        assert reads == [KEY]
        await store.save(KEY, RolloutStatus(step=5))
        assert (await store.load(KEY)).step == 5 and reads == [KEY]
        assert FileStore(tmp_path).read(KEY).step == 5  # and on disk

    asyncio.run(run())


def test_a_step_is_not_reported_as_lagging_by_the_tick_that_set_it(caplog):  # type: ignore[no-untyped-def]
    """The tick that sets a step observed the zones before it: each of them "has not applied step
    N" then, which was logged as a warning for every zone at every step (10,000 rollouts: thousands
    of lines a second). Zones still behind at the next tick are reported then."""
    canary = hubfakes.canary(interval="30s")
    parts = hubfakes.MemoryParts(hubfakes.fleet(), [canary])
    now = [10_000.0]
    waiting: dict[str, str] = {}

    async def run() -> int:
        worker, steps = RolloutWorker(canary.key, parts, MemoryStore(), clock=lambda: now[0]), 0
        for _ in range(120):
            now[0] += 1
            report = await worker.tick(canary)
            steps += report.decision.status.step != report.status.step
            waiting.update(journal.explain(waiting, report))
            assert not waiting, waiting
        return steps

    with caplog.at_level(logging.INFO, logger="federation.hub"):
        assert asyncio.run(run()) > 3
    assert "has not applied" not in caplog.text

    behind = hubfakes.MemoryParts(hubfakes.fleet(), [canary])  # a zone that never applies: told at the next tick
    behind.zones["eks"] = hubfakes.MemoryZone("eks", {})

    async def lagging() -> dict[str, str]:
        worker, seen = RolloutWorker(canary.key, behind, MemoryStore(), clock=lambda: now[0]), {}
        for _ in range(3):
            now[0] += 1
            seen = journal.explain(seen, await worker.tick(canary))
        return seen

    with caplog.at_level(logging.INFO, logger="federation.hub"):
        assert "eks" in asyncio.run(lagging())
    assert "zone eks has not applied step" in caplog.text


def test_a_load_overlapping_a_save_does_not_keep_the_old_status(tmp_path: Path):
    """The API loads a rollout's status (``fedctl status``, ``watch``) while the worker saves it: a
    read of the file begun before the save's rename returns the old status. Cached, it was what the
    worker's next tick decided from — a pause answered "accepted" was lost, and the next pause was
    "accepted" again (seen in a loaded run of tests/integration/test_operator_cli.py)."""
    FileStore(tmp_path).write(KEY, RolloutStatus(step=1))
    store = FileStore(tmp_path)
    real_read = store.read
    reading, go_on = asyncio.Event(), None

    def slow_read(key: str) -> RolloutStatus:
        old = real_read(key)  # the file as it was when the read began
        loop.call_soon_threadsafe(reading.set)
        assert go_on is not None and go_on.wait(10)
        return old

    store.read = slow_read  # type: ignore[method-assign]

    async def run() -> None:
        nonlocal loop, go_on
        import threading

        go_on = threading.Event()
        api = asyncio.create_task(store.load(KEY))  # the API's load: reads the file in a thread
        await reading.wait()
        await store.save(KEY, RolloutStatus(step=1, paused=True))  # the worker's save of the pause
        go_on.set()
        await api
        store.read = real_read  # type: ignore[method-assign]
        assert (await store.load(KEY)).paused, "the next tick loads the saved status, not the old file"

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
