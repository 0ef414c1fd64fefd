"""Loopback servers that speak metric backends' documented HTTP APIs, for tests: each records what
it was asked (path, query parameters, headers) and answers what the test sets. Stopped with ``close``.

- ``Prometheus``: ``GET /api/v1/query`` (instant vector).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Answer = tuple[int, dict[str, str], bytes]  # status, headers, body


def json_answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Answer:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body).encode()


class Stub:
    """A loopback HTTP server: ``answer(method, path, params, headers, body)`` decides each reply."""

    def __init__(self, answer: Callable[[str, str, dict[str, list[str]], dict[str, str], bytes], Answer]) -> None:
        self.asked: list[tuple[str, str, dict[str, list[str]], dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                params = parse_qs(parts.query)
                if self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
                    for k, v in parse_qs(body.decode()).items():
                        params.setdefault(k, []).extend(v)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with outer.lock:
                    outer.asked.append((self.command, parts.path, params, headers, body))
                status, out_headers, out = answer(self.command, parts.path, params, headers, body)
                self.send_response(status)
                for k, v in out_headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = _serve
            do_POST = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def queries(self, param: str = "query") -> list[str]:
        with self.lock:
            return [p[param][0] for _, _, p, _, _ in self.asked if param in p]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def prometheus(value: str | Callable[[str], str] = "42") -> Stub:
    """Every instant query answers one sample of ``value`` (or ``value(query)``); "" is an empty
    vector, "NaN" a NaN sample."""
    def answer(method: str, path: str, params: dict[str, list[str]], headers: dict[str, str], body: bytes) -> Answer:
        v = value(params.get("query", [""])[0]) if callable(value) else value
        result = [] if v == "" else [{"metric": {}, "value": [0, v]}]
        return json_answer({"status": "success", "data": {"resultType": "vector", "result": result}})
    return Stub(answer)
