"""The hub API under hostile requests: bounded bodies (by Content-Length and chunked), the OpenAPI
document behind the token and no browsable docs, /readyz public with counts only (no problem texts,
no paths), a too-short token refused in one line before anything starts."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from hypothesis import strategies as st

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


# ----------------------------------------------------------------------------- API requests, fuzzed

_segment = (st.text(max_size=20).map(lambda s: urllib.parse.quote(s, safe=""))  # any text, percent-encoded
            | st.sampled_from(["shop", "frontend", "..", "%2e%2e", "a" * 300, "", "%00", "%ff", "%2F"]))
_method = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"])
_paths = st.one_of(
    st.builds(lambda n, m: f"/api/v1/rollouts/{n}/{m}", _segment, _segment),
    st.builds(lambda n, m, c: f"/api/v1/rollouts/{n}/{m}/{c}", st.sampled_from(["shop", "x"]),
              st.sampled_from(["frontend", "y"]), st.sampled_from(["pause", "resume", "abort", "retry", "promote",
                                                                   "undo", "metrics", "nope", "", "%0a"]) | _segment),
    st.builds(lambda s: f"/api/v1/history/{s}", _segment),
    st.sampled_from(["/api/v1/rollouts", "/healthz", "/readyz", "/openapi.json", "/ui/login", "/ui/logout",
                     "/ui/api/fleet/check", "/ui/api/rollouts/shop/frontend/pause"]),
)
_query = st.dictionaries(st.sampled_from(["wait", "limit", "skipAnalysis", "x"]),
                         st.sampled_from(["0", "-1", "nan", "inf", "1e308", "121", "true", "", "0.01", "ß", "1" * 400]),
                         max_size=3)
_body = st.binary(max_size=300) | st.sampled_from([b"{}", b"[]", b"null", b'{"wait": 5}', b"token=" + b"h" * 32,
                                                  b"token=%ff%fe", b"\x00" * 100])


def test_fuzzed_requests_get_a_clear_answer_never_a_500(tmp_path: Path):
    """Any method, path, query, body and content type against the API and the web UI: an answer
    under 500, a JSON ``detail`` or ``message`` (or the page) for a refusal, in bounded time — on a hub with one
    rollout (its workers not running: a command waits at most what its ``wait`` says, bounded here)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st_

    loop = asyncio.new_event_loop()
    hub_cm = running_hub(tmp_path)
    _fleet, hub, client = loop.run_until_complete(hub_cm.__aenter__())
    try:
        push(_fleet, "mesh", {"canaries/frontend.yaml": canary_text()})
        loop.run_until_complete(hub.discover())

        @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
        @given(method=_method, path=_paths, query=_query, body=_body,
               ctype=st_.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain", "",
                                       "multipart/form-data; boundary=x"]))
        def one(method: str, path: str, query: dict[str, str], body: bytes, ctype: str) -> None:
            if "wait" in query or path.endswith(("/pause", "/resume", "/abort", "/retry", "/promote")):
                query = {**query, "wait": query.get("wait", "0")}
                if query["wait"] not in ("nan", "inf", "1e308", "121", "-1", "true", "", "ß") and \
                        not query["wait"].startswith("1" * 10):
                    query["wait"] = "0"  # no worker runs: a valid wait would only sleep
            headers = {"content-type": ctype} if ctype else {}
            t0 = time.monotonic()
            r = loop.run_until_complete(client.request(method, path, params=query, content=body, headers=headers))
            assert r.status_code < 500, (method, path, query, body, r.status_code, r.text[:300])
            assert time.monotonic() - t0 < 20, (method, path, "slow answer")
            if r.status_code >= 400 and r.headers.get("content-type", "").startswith("application/json"):
                answer = r.json()  # FastAPI's detail, or a command's answer (409: rejected, with the reason)
                assert isinstance(answer, dict) and (answer.get("detail") or answer.get("message")), (method, path,
                                                                                                 r.text[:300])

        one()
    finally:
        loop.run_until_complete(hub_cm.__aexit__(None, None, None))
        loop.close()
