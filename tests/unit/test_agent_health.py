"""The agent's health checks: one bad answer does not take a healthy instance out of the route
(the chaos soak saw a zone answer 503 'no version serves here' when a busy VM's only instance of a
version answered one check late); three in a row do; one good answer makes it healthy again."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from vmagent.supervisor import Instance, Supervisor

FAILURE_THRESHOLD = 3  # bad answers in a row that take an instance out (as Kubernetes)


def test_a_healthy_instance_survives_a_failed_check_and_not_three(tmp_path: Path):
    answers: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(answers.pop(0) if answers else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sup = Supervisor(str(tmp_path), 30000, 30001)
        inst = Instance("s/v/0", "s", "v", server.server_address[1], 1, ["app"])
        answers.extend([503])
        assert not sup.check_health(inst)  # never healthy yet: not routed
        assert sup.check_health(inst)  # first good answer
        answers.extend([503] * (FAILURE_THRESHOLD - 1))
        for _ in range(FAILURE_THRESHOLD - 1):
            assert sup.check_health(inst), "one late or bad answer took a healthy instance out"
        assert sup.check_health(inst)  # a good answer resets the count
        answers.extend([503] * FAILURE_THRESHOLD)
        results = [sup.check_health(inst) for _ in range(FAILURE_THRESHOLD)]
        assert results == [True] * (FAILURE_THRESHOLD - 1) + [False]
        assert sup.check_health(inst)
    finally:
        server.shutdown()
        server.server_close()
