"""One loopback HTTP receiver for tests (webhooks, alert providers): records every POST — path,
headers, JSON body — and answers with the next of ``answers`` (then 200), or with ``status(name)``
for the path's name; optionally after a delay. Stopped with ``close``."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    def __init__(self, answers: list[int] | None = None, delay: float = 0.0,
                 status: Callable[[str], int] | None = None) -> None:
        self.got: list[tuple[str, dict[str, str], Any]] = []  # (path, headers, body) in arrival order
        self.calls: dict[str, list[Any]] = defaultdict(list)  # path without its leading "/" -> bodies
        self.raw = b""  # the last body as sent
        self.lock = threading.Lock()
        queue = list(answers or [])
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                name = self.path.strip("/")
                with outer.lock:
                    outer.raw = raw
                    body = json.loads(raw)
                    outer.got.append((self.path, dict(self.headers), body))
                    outer.calls[name].append(body)
                    code = status(name) if status else (queue.pop(0) if queue else 200)
                if delay:
                    time.sleep(delay)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = f"{self.base}/hook"

    @property
    def bodies(self) -> list[Any]:
        with self.lock:
            return [b for _, _, b in self.got]

    def count(self, name: str) -> int:
        with self.lock:
            return len(self.calls[name])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
