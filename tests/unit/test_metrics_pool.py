"""The metric query pool starts the queued query of the slowest endpoint first (an analysis then
costs about its slowest query, not that plus every other query's start), and a Prometheus client
feeds it how long its last query took."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from federation.core.spec import PrometheusSource
from federation.metrics import prometheus
from federation.metrics.pool import SlowestFirst


def busy_pool() -> tuple[SlowestFirst, threading.Event, concurrent.futures.Future[bool]]:
    """A pool of one thread, busy until the returned gate is set (the thread runs the blocking call,
    not still starting: what is submitted next queues)."""
    pool = SlowestFirst(1, "test")
    gate, busy = threading.Event(), threading.Event()

    def block() -> bool:
        busy.set()
        return gate.wait(10)
    blocker = pool.submit(0.0, block)
    assert busy.wait(10)
    return pool, gate, blocker


def test_queued_calls_run_slowest_first_ties_in_order():
    pool, gate, blocker = busy_pool()
    ran: list[str] = []
    futures = [pool.submit(latency, ran.append, name)
               for latency, name in ((0.1, "fast"), (0.3, "slow-1"), (0.2, "middle"), (0.3, "slow-2"), (0.0, "new"))]
    gate.set()
    assert blocker.result(timeout=10) is True
    for f in futures:
        f.result(timeout=10)
    assert ran == ["slow-1", "slow-2", "middle", "fast", "new"]


def test_errors_reach_the_caller_and_a_cancelled_call_never_runs():
    pool, gate, _ = busy_pool()
    ran: list[int] = []
    cancelled = pool.submit(1.0, ran.append, 1)
    assert cancelled.cancel()
    failing = pool.submit(0.5, lambda: 1 / 0)
    gate.set()
    with pytest.raises(ZeroDivisionError):
        failing.result(timeout=10)
    assert pool.submit(0.0, ran.append, 2).result(timeout=10) is None
    assert ran == [2]


def test_threads_are_made_as_needed_up_to_the_size():
    pool = SlowestFirst(3, "test")
    gate = threading.Event()
    started = threading.Semaphore(0)

    def hold() -> None:
        started.release()
        gate.wait(10)

    futures = [pool.submit(0.0, hold) for _ in range(5)]
    for _ in range(3):  # three run at once (polled with a deadline); the other two wait for a thread
        assert started.acquire(timeout=10)
    assert not started.acquire(timeout=0.2)
    gate.set()
    for f in futures:
        f.result(timeout=10)
    assert pool._threads == 3


def test_a_client_gives_the_pool_its_last_querys_duration(monkeypatch: pytest.MonkeyPatch):
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_GET(self) -> None:
            time.sleep(0.05)
            body = b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"7"]}]}}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    seen: list[float] = []
    pool = SlowestFirst(4, "test")
    original = pool.submit

    def submit(latency: float, fn, *args):  # type: ignore[no-untyped-def]
        seen.append(latency)
        return original(latency, fn, *args)

    monkeypatch.setattr(pool, "submit", submit)
    monkeypatch.setattr(prometheus, "_POOL", pool)
    try:
        client = prometheus.Client(PrometheusSource(url=f"http://127.0.0.1:{server.server_address[1]}", timeout="5s"))
        assert asyncio.run(client.scalar("up")) == 7.0
        assert asyncio.run(client.scalar("up")) == 7.0
        assert seen[0] == 0.0 and seen[1] >= 0.05  # never asked: no priority; then its last query's time
    finally:
        server.shutdown()
        server.server_close()
