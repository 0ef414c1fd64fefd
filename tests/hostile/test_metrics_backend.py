"""A metrics backend answering bad values, on loopback: NaN, ±Inf, huge or non-numeric values,
several series where one is expected, scalar/string/matrix results, malformed and oversized
bodies. Every one is no data with one short reason — never a value a threshold could pass, never
a traceback — and the client never reads more than its bound."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from federation.core import analysis as core_analysis
from federation.core.spec import PrometheusSource
from federation.core.state import MetricSample
from federation.metrics import prometheus
from federation.metrics.prometheus import Client, NoData
from tests import hubfakes


class Backend:
    """Answers every query with ``self.body`` (bytes), chunked when ``self.chunked``."""

    def __init__(self) -> None:
        self.body = b""
        self.chunked = False
        self.sent = 0
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                try:
                    if outer.chunked:
                        self.send_header("Transfer-Encoding", "chunked")
                        self.end_headers()
                        chunk = b" " * 65536
                        for _ in range(len(outer.body) // len(chunk)):
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                            outer.sent += len(chunk)
                        self.wfile.write(b"0\r\n\r\n")
                    else:
                        self.send_header("Content-Length", str(len(outer.body)))
                        self.end_headers()
                        self.wfile.write(outer.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading: what the bound is for

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, result: Any, result_type: str = "vector") -> None:
        self.body = json.dumps({"status": "success", "data": {"resultType": result_type, "result": result}}).encode()


@pytest.fixture
def backend() -> Iterator[Backend]:
    b = Backend()
    yield b
    b.server.shutdown()
    b.server.server_close()


def vector(*values: Any, labels: list[dict[str, str]] | None = None) -> list[dict[str, Any]]:
    return [{"metric": (labels or [{}] * len(values))[i], "value": [1.0, v]} for i, v in enumerate(values)]


@pytest.mark.parametrize(("result", "result_type", "reason"), [
    (vector("NaN"), "vector", "NaN result"),
    (vector("+Inf"), "vector", "non-finite result (+Inf)"),
    (vector("-Inf"), "vector", "non-finite result (-Inf)"),
    (vector("1e400"), "vector", "non-finite result (1e400)"),
    (vector("1e300"), "vector", "result out of range (1e+300)"),
    (vector("lots"), "vector", "malformed answer: value is not a number"),
    (vector(["1"]), "vector", "malformed answer: value is not a number"),
    (vector(True), "vector", "malformed answer: value is not a number"),
    (vector("99.9", "1"), "vector", "2 series where one is expected"),
    ([1.0, "99.9"], "scalar", "malformed answer: not an instant vector"),
    ([1.0, "hello"], "string", "malformed answer: not an instant vector"),
    ([{"metric": {}, "values": [[1.0, "99.9"]]}], "matrix", "malformed answer: not an instant vector"),
    ({"a": 1}, "vector", "malformed answer: not an instant vector"),
    ([], "vector", "empty result"),
])
def test_a_bad_value_is_no_data(backend: Backend, result: Any, result_type: str, reason: str):
    backend.answer(result, result_type)
    client = Client(PrometheusSource(url=backend.url, timeout="5s"))
    with pytest.raises(NoData) as err:
        asyncio.run(client.scalar("up"))
    assert reason in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_buckets_are_no_data(backend: Backend):
    client = Client(PrometheusSource(url=backend.url, timeout="5s"))
    backend.answer(vector("1", "+Inf", labels=[{"le": "0.1"}, {"le": "+Inf"}]))
    with pytest.raises(NoData, match="non-finite"):
        asyncio.run(client.buckets("q"))
    backend.answer(vector("1", "2", labels=[{"le": "x"}, {"le": "+Inf"}]))
    with pytest.raises(NoData, match="le is not a number"):
        asyncio.run(client.buckets("q"))
    backend.answer(vector("1", "2", labels=[{"le": "0.1"}, {"le": "0.1"}]))
    with pytest.raises(NoData, match="twice"):
        asyncio.run(client.buckets("q"))
    backend.answer(vector("1", "2", labels=[{"le": "0.1"}, {"le": "+Inf"}]))
    assert asyncio.run(client.buckets("q")) == {0.1: 1.0, float("inf"): 2.0}


def test_range_queries_refuse_infinities_and_several_series(backend: Backend):
    client = Client(PrometheusSource(url=backend.url, timeout="5s"))
    backend.answer([{"metric": {}, "values": [[1, "1"], [2, "+Inf"]]}], "matrix")
    with pytest.raises(NoData, match="non-finite"):
        asyncio.run(client.range("q", 0, 10, 1))
    backend.answer([{"metric": {}, "values": [[1, "1"]]}, {"metric": {}, "values": [[1, "2"]]}], "matrix")
    with pytest.raises(NoData, match="2 series"):
        asyncio.run(client.range("q", 0, 10, 1))
    backend.answer([{"metric": {}, "values": [[1, "1"], [2, "NaN"], [3, "3"]]}], "matrix")
    assert asyncio.run(client.range("q", 0, 10, 1)) == [1.0, 3.0]  # a NaN step: no requests then


@pytest.mark.parametrize("chunked", [False, True])
def test_an_oversized_answer_is_cut_at_the_bound(backend: Backend, chunked: bool):
    backend.body = b" " * (64 * 1024 * 1024)
    backend.chunked = chunked
    client = Client(PrometheusSource(url=backend.url, timeout="10s"))
    with pytest.raises(NoData, match="answer larger than 8 MiB"):
        asyncio.run(client.scalar("up"))
    if chunked:
        assert backend.sent < 32 * 1024 * 1024  # the client stopped reading


def test_a_body_that_is_not_json_is_no_data(backend: Backend):
    backend.body = b"<html>proxy error</html>"
    client = Client(PrometheusSource(url=backend.url, timeout="5s"))
    with pytest.raises(NoData):
        asyncio.run(client.scalar("up"))


def test_a_non_finite_sample_never_passes_a_check():
    canary = hubfakes.canary()
    for value in (float("nan"), float("inf"), float("-inf")):
        samples = [MetricSample(m.name, z, value, requests=1000)
                   for m in canary.spec.analysis.metrics for z in (None, *canary.spec.canary.zones)]
        verdict = core_analysis.judge(canary.spec, samples)
        assert verdict.checks and all(c.outcome == "nodata" for c in verdict.checks), verdict.checks


def test_the_bound_is_what_the_docs_say():
    assert prometheus.MAX_ANSWER == 8 * 1024 * 1024
