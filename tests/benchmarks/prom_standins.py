"""Prometheus stand-ins for the analysis benchmark, in a process of their own.

``python -m tests.benchmarks.prom_standins D1 D2 ...`` serves one endpoint speaking the Prometheus
HTTP API (``/api/v1/query``) per delay (seconds; each answer waits that long), on loopback ports it
prints as one JSON line, then serves until its stdin closes. A real zone's Prometheus runs
elsewhere: here the endpoints' threads do not share the hub's interpreter (its GIL), as they did
when the benchmark served them from its own process.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def server(delay: float) -> ThreadingHTTPServer:
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Prometheus
        disable_nagle_algorithm = True  # TCP_NODELAY, as Go servers (else delayed ACKs add 40 ms)

        def log_message(self, *a: object) -> None:
            pass

        def do_GET(self) -> None:
            time.sleep(delay)
            if "le" in self.path or "bucket" in self.path:
                result = [{"metric": {"le": le}, "value": [time.time(), str(v)]}
                          for le, v in (("10", 50), ("100", 95), ("+Inf", 100))]
            else:
                result = [{"metric": {}, "value": [time.time(), "100"]}]
            body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    s = ThreadingHTTPServer(("127.0.0.1", 0), H)
    s.daemon_threads = True
    threading.Thread(target=s.serve_forever, daemon=True).start()
    return s


def main(argv: list[str]) -> int:
    servers = [server(float(d)) for d in argv]
    print(json.dumps([s.server_address[1] for s in servers]), flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin (or stops our process group)
    for s in servers:
        s.shutdown()
        s.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
