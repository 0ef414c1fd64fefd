"""The web pages' live stream (server-sent events, ``hub.webstream``) from a hub served by uvicorn
on loopback (the real Hub, worker, core, API and web; in-memory zones): no stream without a
session; a ``change`` naming the rollout arrives when a command takes effect; a reconnect with
``Last-Event-ID`` is told at once what changed meanwhile; the stream says ``logout`` when the
session ends; and an open stream does not hold the hub's shutdown."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from federation.hub import api
from federation.hub.service import Hub
from federation.hub.store import MemoryStore
from tests import hubfakes
from tests.integration.conftest import free_port
from tests.integration.test_hub_web import login

TOKEN = "t" * 32
KEY = "shop/frontend"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


async def events(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
    """Server-sent events as dicts (id, event, data), comments and ``retry`` left out."""
    ev: dict[str, Any] = {}
    async for line in lines:
        if not line:
            if "event" in ev:
                yield ev
            ev = {}
        elif not line.startswith(":") and ":" in line:
            field, value = line.split(":", 1)
            ev[field] = json.loads(value) if field == "data" else value.strip()


async def next_event(stream: AsyncIterator[dict[str, Any]], name: str, timeout: float,
                     check: Any = lambda e: True) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        ev = await asyncio.wait_for(anext(stream), max(0.1, deadline - time.monotonic()))
        if ev["event"] == name and check(ev):
            return ev


def test_the_live_stream(tmp_path: Path):
    parts = hubfakes.MemoryParts(hubfakes.fleet(), [hubfakes.canary(interval="1s")])
    hub = Hub(hubfakes.fleet(), tmp_path / "hub", tick=0.05, discover_every=1.0, store=MemoryStore(), parts=parts)
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    async def go() -> None:
        served = asyncio.create_task(api.serve(hub, TOKEN, "127.0.0.1", port))
        try:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                async def up() -> bool:
                    try:
                        return (await client.get("/readyz")).status_code == 200
                    except httpx.HTTPError:
                        return False
                await hubfakes.until(up, 60, "the hub's /readyz", 0.1)
                assert (await client.get("/ui/api/stream")).status_code == 401
                csrf = await login(client)
                async with client.stream("GET", f"/ui/api/stream?rollout={KEY}") as r:
                    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
                    assert r.headers["content-security-policy"]
                    stream = events(r.aiter_lines())
                    hello = await next_event(stream, "hello", 10)
                    # A pause taken by the hub: a change naming the rollout, after which it is paused.
                    assert (await client.post(f"/api/v1/rollouts/{KEY}/pause", headers=BEARER)).status_code == 200
                    assert (await client.get(f"/api/v1/rollouts/{KEY}", headers=BEARER)).json()["paused"] is True
                    change = await next_event(stream, "change", 10, lambda e: KEY in (e["data"]["rollouts"] or []))
                    assert int(change["id"]) > int(hello["id"])
                    # Reconnecting from the hello: told at once that the rollout changed meanwhile.
                    async with client.stream("GET", f"/ui/api/stream?rollout={KEY}",
                                             headers={"Last-Event-ID": hello["id"]}) as again:
                        first = await next_event(events(again.aiter_lines()), "change", 10)
                        assert first["data"]["reconnected"] is True and KEY in first["data"]["rollouts"]
                    # The session ends (logout): the stream says so at its next wake (the rollout moves again).
                    assert (await client.post(f"/api/v1/rollouts/{KEY}/resume", headers=BEARER)).status_code == 200
                    r2 = await client.post("/ui/logout", headers={"X-CSRF-Token": csrf})
                    assert r2.status_code == 200
                    await next_event(stream, "logout", 20)
                # A stream open while the hub stops ends with it.
                await login(client)
                async with client.stream("GET", "/ui/api/stream") as r:
                    stream = events(r.aiter_lines())
                    await next_event(stream, "hello", 10)
                    t0 = time.monotonic()
                    hub.stop()
                    await asyncio.wait_for(served, 30)
                    assert time.monotonic() - t0 < 10
        finally:
            hub.stop()
            await asyncio.wait_for(served, 30)

    asyncio.run(go())
