"""The web pages' live updates: ``GET /ui/api/stream``, server-sent events behind the session.

An event ``change`` (``id``: the hub's change sequence, ``data``: the rollouts that changed, ``""``
for what discovery found) is sent when a page's data changed (``journal.Changes``: a tick that
moved a rollout's step, phase, weights, analysis or events; a discovery that found other rollouts
or problems); the page then fetches its data again and updates in place. ``?rollout=ns/name``
keeps only that rollout's changes (and discovery's). A comment every ``KEEPALIVE`` seconds keeps
proxies from closing an idle stream; ``retry`` tells the browser when to reconnect, and its
``Last-Event-ID`` makes the first event after a reconnect say what changed meanwhile. A stream
ends after ``MAX_AGE`` seconds (the browser reconnects: no connection lives on forever through
proxies), with ``logout`` when the session ends, and at once when the hub stops. At most
``MAX_STREAMS`` streams run; past that the answer is 503 and the page polls instead.
Callers: ``hub.web.mount``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import StreamingResponse

from federation.hub.service import Hub

KEEPALIVE = 15.0
RETRY_MS = 2000
MAX_STREAMS = 64
MAX_AGE = 300.0


def event(name: str, seq: int, data: dict[str, Any]) -> str:
    return f"id: {seq}\nevent: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def mount(app: FastAPI, hub: Hub, sessions: Any, cookie: str) -> None:
    """``sessions``: ``web.Sessions`` (``csrf(sid)`` is None once the session ended)."""
    streams: set[int] = set()

    @app.get("/ui/api/stream", include_in_schema=False)
    async def stream(request: Request, rollout: str = "") -> StreamingResponse:
        sid = request.cookies.get(cookie)
        if sessions.csrf(sid) is None:
            raise HTTPException(401, "no session: log in at /ui/login")
        if len(streams) >= MAX_STREAMS:
            raise HTTPException(503, f"{MAX_STREAMS} live streams already open; poll instead")
        last = request.headers.get("Last-Event-ID", "")
        changes = hub.changes

        def wanted(keys: list[str] | None) -> bool:
            return keys is None or not rollout or bool({rollout, ""} & set(keys))

        async def events() -> AsyncIterator[str]:
            streams.add(id(request))
            try:
                seq = changes.seq
                yield f"retry: {RETRY_MS}\n\n"
                missed = changes.since(int(last)) if last.isdigit() else []
                if last.isdigit() and int(last) != seq and wanted(missed):
                    yield event("change", seq, {"rollouts": missed, "reconnected": True})
                else:
                    yield event("hello", seq, {"rollouts": []})
                until = time.monotonic() + MAX_AGE
                while not changes.closed and time.monotonic() < until:
                    new = await changes.wait(seq, max(0.0, min(KEEPALIVE, until - time.monotonic())))
                    if sessions.csrf(sid) is None:
                        yield event("logout", new, {})
                        return
                    if changes.closed or await request.is_disconnected():
                        return
                    if new == seq:
                        yield ": keep-alive\n\n"
                        continue
                    keys, seq = changes.since(seq), new
                    if wanted(keys):
                        yield event("change", seq, {"rollouts": keys})
            finally:
                streams.discard(id(request))

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
