"""DNS rebinding: a name that resolves to an allowed address when the outbound policy checks it and
to a forbidden one when the client connects. Two real HTTP servers on one port, 127.0.0.2 (allowed
by the policy) and 127.0.0.1 (not); the resolver is the one stand-in: for ``rebind.test`` it
answers 127.0.0.2 the first time and 127.0.0.1 after that, as a rebinding DNS server does (every
other name resolves for real). Webhooks (httpx), metric backends (httpx) and Prometheus (requests)
must never reach 127.0.0.1; with a name that keeps resolving to 127.0.0.2 they work."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from federation.core import outbound
from federation.core.spec import MetricProvider, PrometheusSource, Webhook
from federation.metrics.backends import _Policed
from federation.metrics.backends.graphite import Graphite
from federation.metrics.backends.secrets import Store
from federation.metrics.prometheus import Client, Unreachable
from federation.notify import webhooks

POLICY = outbound.Policy(allow=("127.0.0.2/32",))
NAME = "rebind.test"


class _Handler(http.server.BaseHTTPRequestHandler):
    def _answer(self) -> None:
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        if self.path.startswith("/render"):
            body: Any = [{"target": "x", "datapoints": [[1.0, 0]]}]
        else:
            body = {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, "1"]}]}}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def servers() -> Iterator[tuple[int, list[str], list[str]]]:
    """(port, paths the allowed server got, paths the forbidden one got)."""
    for _ in range(50):
        forbidden = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        port = forbidden.server_address[1]
        try:
            allowed = http.server.ThreadingHTTPServer(("127.0.0.2", port), _Handler)
            break
        except OSError:
            forbidden.server_close()
    else:
        raise AssertionError("no port free on both 127.0.0.1 and 127.0.0.2")
    allowed.hits, forbidden.hits = [], []  # type: ignore[attr-defined]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (allowed, forbidden)]
    for t in threads:
        t.start()
    try:
        yield port, allowed.hits, forbidden.hits  # type: ignore[attr-defined]
    finally:
        for s in (allowed, forbidden):
            s.shutdown()
            s.server_close()
        for t in threads:
            t.join(10)


@pytest.fixture(params=["rebinding", "stable"])
def resolver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    real = socket.getaddrinfo
    answers: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if (host.decode() if isinstance(host, bytes) else host) != NAME:  # anyio passes the name IDNA-encoded
            return real(host, port, *args, **kwargs)
        address = "127.0.0.2" if request.param == "stable" or not answers else "127.0.0.1"
        answers.append(address)
        return real(address, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return str(request.param)


def test_a_webhook_never_reaches_the_address_a_second_lookup_gives(resolver: str):
    with servers() as (port, allowed, forbidden):
        hook = Webhook(name="check", url=f"http://{NAME}:{port}/hook", timeout="10s")
        result = asyncio.run(webhooks.call(hook, {"phase": "Progressing"}, POLICY))
        assert forbidden == []
        if resolver == "stable":
            assert result.ok and allowed == ["/hook"], result
        else:
            assert not result.ok and "refused by the outbound policy" in result.message, result
            assert "127.0.0.1" in result.message and allowed == []


def test_a_metric_backend_never_reaches_the_address_a_second_lookup_gives(resolver: str):
    with servers() as (port, allowed, forbidden):
        provider = MetricProvider.model_validate({"type": "graphite", "address": f"http://{NAME}:{port}"})
        backend = _Policed(Graphite(provider, Store(None), 10.0), POLICY, "graphite")
        if resolver == "stable":
            assert asyncio.run(backend.scalar("target=x", 0.0)) == 1.0
            assert [p.split("?")[0] for p in allowed] == ["/render"]
        else:
            with pytest.raises(Unreachable, match=r"refused by the outbound policy: rebind.test \(127.0.0.1\)"):
                asyncio.run(backend.scalar("target=x", 0.0))
            assert allowed == []
        assert forbidden == []


def test_prometheus_never_reaches_the_address_a_second_lookup_gives(resolver: str):
    with servers() as (port, allowed, forbidden):
        client = Client(PrometheusSource(url=f"http://{NAME}:{port}", timeout="10s"), POLICY)
        if resolver == "stable":
            assert client.scalar_sync("up") == 1.0
            assert len(allowed) == 1
        else:
            with pytest.raises(Unreachable, match=r"refused by the outbound policy: rebind.test \(127.0.0.1\)"):
                client.scalar_sync("up")
            assert allowed == []
        assert forbidden == []
