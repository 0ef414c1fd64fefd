"""Webhooks against a live receiver: Flagger's payload, 2xx gates, retries, timeouts, events."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from federation.core.spec import Webhook
from federation.notify import webhooks


class Receiver:
    def __init__(self, answers: list[int], delay: float = 0.0) -> None:
        self.bodies: list[dict] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_POST(self) -> None:
                outer.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                if delay:
                    time.sleep(delay)
                code = answers.pop(0) if answers else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def hook(url: str, **kw) -> Webhook:
    return Webhook.model_validate({"name": "gate", "type": "confirm-promotion", "url": url,
                                   "metadata": {"cmd": "approve"}, **kw})


def test_gate_payload_and_verdicts():
    r = Receiver([200, 403])
    try:
        ok = asyncio.run(webhooks.call_all([hook(r.url)], "frontend", "shop", "Progressing"))
        assert ok["gate"].ok
        assert r.bodies[0] == {"name": "frontend", "namespace": "shop", "phase": "Progressing",
                               "type": "confirm-promotion", "checksum": "", "metadata": {"cmd": "approve"}}
        no = asyncio.run(webhooks.call_all([hook(r.url)], "frontend", "shop", "Progressing"))
        assert not no["gate"].ok and no["gate"].message == "HTTP 403"
    finally:
        r.close()


def test_retries_then_success_and_timeout_is_a_no():
    r = Receiver([500, 502, 200])
    try:
        res = asyncio.run(webhooks.call(hook(r.url, retries=2), {"x": 1}))
        assert res.ok and len(r.bodies) == 3
    finally:
        r.close()
    slow = Receiver([], delay=2.0)
    try:
        res = asyncio.run(webhooks.call(hook(slow.url, timeout="200ms"), {"x": 1}))
        assert not res.ok and "Timeout" in res.message
    finally:
        slow.close()


def test_event_payload():
    r = Receiver([])
    try:
        asyncio.run(webhooks.send_event([hook(r.url, type="event")], "frontend", "shop", "Failed", "error", "rolled back"))
        body = r.bodies[0]
        assert body["phase"] == "Failed" and body["metadata"]["eventMessage"] == "rolled back"
        assert body["metadata"]["eventType"] == "error" and body["metadata"]["cmd"] == "approve"
    finally:
        r.close()
