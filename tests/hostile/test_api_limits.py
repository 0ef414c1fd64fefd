"""The hub API under hostile requests: bounded bodies (by Content-Length and chunked), the OpenAPI
document behind the token and no browsable docs, /readyz public with counts only (no problem texts,
no paths), a too-short token refused in one line before anything starts."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from tests.cli import installed
from tests.hostile.gitfleet import TOKEN, canary_text, push, running_hub

ROOT = Path(__file__).resolve().parents[2]


def test_a_large_body_is_refused_before_it_is_read(tmp_path: Path):
    async def scenario() -> None:
        async with running_hub(tmp_path) as (fleet, hub, client):
            push(fleet, "mesh", {"canaries/frontend.yaml": canary_text()})
            await hub.discover()
            url = "/api/v1/rollouts/shop/frontend/pause"
            r = await client.post(url, content=b"x" * (64 * 1024 + 1), params={"wait": 0})
            assert r.status_code == 413 and "64 KiB" in r.text

            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(200):  # 12.5 MiB, no Content-Length
                    yield b"y" * 65536

            r = await client.post(url, content=chunks(), params={"wait": 0})
            assert r.status_code == 413
            r = await client.post(url, content=b"{}", params={"wait": 0})  # a small body is fine
            assert r.status_code in (200, 202), r.text

    asyncio.run(scenario())


def test_docs_are_behind_the_token_and_readyz_shows_counts_only(tmp_path: Path):
    async def scenario() -> None:
        async with running_hub(tmp_path) as (fleet, hub, client):
            push(fleet, "mesh", {"canaries/frontend.yaml": canary_text(),
                                 "canaries/bad.yaml": canary_text("bad", "n" * 300, "bad")})
            await hub.discover()
            anonymous = httpx.AsyncClient(transport=client._transport, base_url="http://hub")
            assert (await anonymous.get("/openapi.json")).status_code == 401
            assert (await anonymous.get("/docs")).status_code == 404
            assert (await anonymous.get("/redoc")).status_code == 404
            spec = await client.get("/openapi.json")
            assert spec.status_code == 200 and "/api/v1/rollouts" in spec.json()["paths"]
            ready = await anonymous.get("/readyz")
            assert ready.json() == {"status": "ready", "rollouts": 1, "problems": 1, "invalid": 0, "errors": 0}
            assert "canaries" not in ready.text and str(tmp_path) not in ready.text
            await anonymous.aclose()

    asyncio.run(scenario())


def test_a_short_token_is_one_line_before_anything_starts(tmp_path: Path):
    r = subprocess.run([installed(), "hub", "run", "--fleet", "clusters/fleet.yaml", "--state-dir", str(tmp_path / "s")],
                       capture_output=True, text=True, cwd=ROOT, env={**os.environ, "FEDERATION_TOKEN": "short"},
                       timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip() == "FEDERATION_TOKEN: the API token must be at least 16 characters"
    assert not (tmp_path / "s").exists()
    assert TOKEN  # the suite's token is long enough
