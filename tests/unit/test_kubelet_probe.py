"""The kubelet stand-in's readiness probe (``demo.kubelet``), as Kubernetes counts it: a pod turns
ready on one success and unready only after ``failureThreshold`` failures in a row (or at once when
its process is gone), each probe bounded by ``timeoutSeconds``. One slow answer on a loaded machine
used to take a version's only pod out of its endpoints, and the zone's mesh off it."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from federation.demo.kubelet import LocalKubelet, Pod


class App(http.server.ThreadingHTTPServer):
    status = 200


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class Running:
    """A pod's process as the probe sees it: running or not."""

    def __init__(self) -> None:
        self.up = True

    def alive(self) -> bool:
        return self.up


@pytest.fixture
def app() -> Iterator[App]:
    server = App(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server
    server.shutdown()
    server.server_close()


def probe_run(app: App, pod: Pod, answers: list[int]) -> list[bool]:
    kubelet = LocalKubelet(None, "shop", "eks", None, "app")  # type: ignore[arg-type]
    out = []
    for status in answers:
        app.status = status
        pod.ready = kubelet._probe(pod)
        out.append(pod.ready)
    return out


def pod(app: App, threshold: int) -> Pod:
    return Pod("frontend-v1", "t", {}, app.server_address[1], "/healthz", Running(), threshold=threshold)  # type: ignore[arg-type]


def test_a_pod_turns_unready_only_after_failure_threshold_failures_in_a_row(app: App) -> None:
    p = pod(app, threshold=3)
    assert probe_run(app, p, [500, 200, 500, 500, 200, 500, 500, 500, 200]) == \
        [False, True, True, True, True, True, True, False, True]


def test_a_threshold_of_one_and_a_gone_process_are_unready_at_once(app: App, tmp_path: Path) -> None:
    assert probe_run(app, pod(app, threshold=1), [200, 500, 200]) == [True, False, True]
    p = pod(app, threshold=3)
    assert probe_run(app, p, [200]) == [True]
    p.proc.up = False  # type: ignore[attr-defined]
    assert probe_run(app, p, [200]) == [False]
