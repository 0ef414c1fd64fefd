"""Outbound HTTP clients (``resolve.client``: metric backends, webhooks, alert providers) share one
TLS context per trust setting instead of building one, parsing a CA bundle, for every client: every
query of every analysis makes a client, and each build cost tens of milliseconds of the hub's CPU.
A CA bundle replaced on disk is read again."""

from __future__ import annotations

import asyncio
import http.server
import os
import shutil
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import certifi
import pytest

from federation import resolve
from federation.core import outbound


class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/"
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


@pytest.fixture
def loads(ca_loads: list[int]) -> list[int]:
    cache = getattr(resolve, "_tls", None)
    if cache is not None:
        cache.cache_clear()  # a context an earlier test built would hide this one's load
    return ca_loads


@pytest.mark.parametrize("policy", [None, outbound.Policy(allow=("127.0.0.1/32",))], ids=["plain", "pinned"])
def test_clients_share_one_tls_context(server: str, loads: list[int], policy: outbound.Policy | None) -> None:
    async def requests() -> list[int]:
        codes = []
        for _ in range(10):
            async with resolve.client(policy, server, timeout=5.0) as c:
                codes.append((await c.get(server)).status_code)
        return codes

    assert asyncio.run(requests()) == [204] * 10
    assert len(loads) == 1


def test_a_ca_bundle_is_read_once_and_again_when_replaced(tmp_path: Path, loads: list[int]) -> None:
    bundle = tmp_path / "ca.pem"
    shutil.copy(certifi.where(), bundle)
    first = resolve.tls(str(bundle))
    assert resolve.tls(str(bundle)) is first and len(loads) == 1
    st = bundle.stat()
    os.utime(bundle, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # rotated
    assert resolve.tls(str(bundle)) is not first and len(loads) == 2
    assert first.verify_mode == ssl.CERT_REQUIRED
    assert resolve.tls(False).verify_mode == ssl.CERT_NONE
