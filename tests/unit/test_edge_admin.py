"""The edge's applied version read from its admin endpoint (``runtimes.edge.EnvoyEdge.version_text``):
asked on every observation of a step, without building a TLS context (parsing the CA bundle) each
time."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from federation.core.spec import Edge, Endpoint
from federation.runtimes import envoy_admin
from federation.runtimes.edge import EnvoyEdge

KEY = "http.edge.rds.frontend.version_text"


class Stats(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f'{KEY}: "shop/frontend@step-7"\n'.encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def admin() -> Iterator[int]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stats)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


def test_version_text_is_read_without_parsing_the_ca_bundle_on_each_call(admin: int, ca_loads: list[int]):
    edge = EnvoyEdge(Edge(rds_path="/nonexistent/rds.json", admin=Endpoint(address="127.0.0.1", port=admin)))

    async def read() -> list[str | None]:
        return [await edge.version_text("frontend") for _ in range(5)]

    assert asyncio.run(read()) == ["shop/frontend@step-7"] * 5
    assert asyncio.run(edge.version_text("frontend")) == "shop/frontend@step-7"  # another event loop
    assert len(ca_loads) <= 1, f"the CA bundle was parsed {len(ca_loads)} times for 6 reads"


def test_a_zone_ingress_route_is_read_without_parsing_the_ca_bundle_on_each_call(admin: int, ca_loads: list[int]):
    """``envoy_admin.routed_clusters``, asked on every observation of a Kubernetes zone whose ingress
    admin is named, shares the admin reads' one TLS context."""
    async def read() -> list[list[str] | str]:
        return [await envoy_admin.routed_clusters("127.0.0.1", admin, "frontend") for _ in range(5)]

    answers = asyncio.run(read())
    assert all(isinstance(a, str) and "not JSON" in a for a in answers)  # this stub serves stats text
    assert len(ca_loads) <= 1, f"the CA bundle was parsed {len(ca_loads)} times for 5 reads"
