"""``fed-demo-app``: the demo service. One version per process, its own metrics, optional faults.

Stands in for the legacy app the fleet moves. ``FAULT_RATE`` (0..1) answers that share of requests
with 500; ``EXTRA_LATENCY_MS`` adds latency to every request. Faults are spread evenly (every n-th
request), so the injected rate is exact over any window. Exposes ``/metrics`` (Prometheus).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 1.0, 2.5)


class App:
    def __init__(self, service: str, version: str, zone: str, fault_rate: float, latency_ms: float) -> None:
        self.service, self.version, self.zone = service, version, zone
        self.fault_rate, self.latency = fault_rate, latency_ms / 1000.0
        self.registry = CollectorRegistry()
        labels = ["service", "version", "zone", "code"]
        self.requests = Counter("http_requests_total", "Requests served", labels, registry=self.registry)
        self.duration = Histogram("http_request_duration_seconds", "Request duration", ["service", "version", "zone"],
                                  buckets=BUCKETS, registry=self.registry)
        self._n = 0
        self._lock = threading.Lock()

    def fault(self) -> bool:
        if self.fault_rate <= 0:
            return False
        with self._lock:
            self._n += 1
            n = self._n
        # Bresenham-style spreading: fault when the running share falls behind the rate.
        return int(n * self.fault_rate) != int((n - 1) * self.fault_rate)


def handler(app: App) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: object) -> None:  # quiet: metrics tell the story
            pass

        def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Version", app.version)
            self.send_header("X-Zone", app.zone)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._send(200, b"ok\n")
                return
            if self.path == "/metrics":
                self._send(200, generate_latest(app.registry), CONTENT_TYPE_LATEST)
                return
            start = time.perf_counter()
            if app.latency:
                time.sleep(app.latency)
            hold = parse_qs(urlsplit(self.path).query).get("hold_ms", [""])[0]
            if hold.isdigit():  # a slow request on purpose (tests of draining), at most 10 s
                time.sleep(min(int(hold), 10_000) / 1000)
            code = 500 if app.fault() else 200
            body = f"{app.service} {app.version} zone={app.zone} {'fault' if code == 500 else 'ok'}\n".encode()
            self._send(code, body)
            app.requests.labels(app.service, app.version, app.zone, str(code)).inc()
            app.duration.labels(app.service, app.version, app.zone).observe(time.perf_counter() - start)

    return Handler


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fed-demo-app")
    p.add_argument("--service", default=os.environ.get("FED_SERVICE", "frontend"))
    p.add_argument("--version", default=os.environ.get("FED_VERSION", "v1"))
    p.add_argument("--zone", default=os.environ.get("FED_ZONE", "local"))
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    args = p.parse_args(argv)
    app = App(args.service, args.version, args.zone, float(os.environ.get("FAULT_RATE", "0")),
              float(os.environ.get("EXTRA_LATENCY_MS", "0")))
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler(app))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
