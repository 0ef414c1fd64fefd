"""The web dashboard on a running hub (the real Hub, worker, core and API; in-memory zones): the
token is exchanged for an HttpOnly SameSite=Strict session cookie, nothing but the login page
opens without it, actions need the session's CSRF token and take effect through the same calls
as the API, pages carry a CSP without inline script, and the one-rollout data holds the weights
of every step taken."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from federation.core.spec import Webhook
from federation.core.state import Phase
from federation.hub.api import app_for
from federation.hub.service import Hub
from federation.hub.store import MemoryStore
from tests import hubfakes
from tests.httpstub import Receiver

TOKEN = "t" * 32
KEY = "shop/frontend"
Scenario = Callable[[Hub, httpx.AsyncClient], Awaitable[None]]


def run_hub(tmp_path: Path, scenario: Scenario, interval: str = "1s", hooks: list[dict[str, str]] | None = None) -> None:
    canary = hubfakes.canary(interval=interval)
    if hooks:
        canary = canary.model_copy(update={"spec": canary.spec.model_copy(update={
            "analysis": canary.spec.analysis.model_copy(update={"webhooks": [Webhook(**h) for h in hooks]})})})
    parts = hubfakes.MemoryParts(hubfakes.fleet(), [canary])
    hub = Hub(hubfakes.fleet(), tmp_path / "hub", tick=0.05, discover_every=1.0, store=MemoryStore(), parts=parts)

    async def go() -> None:
        task = asyncio.create_task(hub.run())
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app_for(hub, TOKEN)),
                                         base_url="http://hub", timeout=60) as client:
                await hubfakes.until(lambda: _ticked(hub), 60, "the first tick")
                await scenario(hub, client)
        finally:
            hub.stop()
            await asyncio.wait_for(task, 30)

    asyncio.run(go())


async def _ticked(hub: Hub) -> bool:
    return KEY in hub.last


async def login(client: httpx.AsyncClient) -> str:
    """Log in; the CSRF token the page carries."""
    r = await client.post("/ui/login", data={"token": TOKEN})
    assert r.status_code == 303 and r.headers["location"] == "/ui/", r.text
    page = await client.get("/ui/rollouts")
    assert page.status_code == 200
    m = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
    assert m
    return m.group(1)


def test_nothing_but_the_login_page_opens_without_a_session(tmp_path: Path):
    async def scenario(hub: Hub, client: httpx.AsyncClient) -> None:
        for page in ("/ui/", "/ui/rollouts", f"/ui/rollouts/{KEY}"):
            r = await client.get(page)
            assert r.status_code == 303 and r.headers["location"] == "/ui/login", page
        for data in ("/ui/static/app.js", "/ui/static/app.css", "/ui/static/vendor/chart.umd.js",
                     "/ui/api/fleet", "/ui/api/rollouts", f"/ui/api/rollouts/{KEY}"):
            assert (await client.get(data)).status_code == 401, data
        # The API's bearer token is not a session either.
        r = await client.get("/ui/api/rollouts", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 401
        r = await client.get("/ui/login")
        assert r.status_code == 200 and 'name="token"' in r.text
        assert (await client.get("/ui/static/login.css")).status_code == 200
        # A wrong token: refused, no cookie.
        r = await client.post("/ui/login", data={"token": "x" * 32})
        assert r.status_code == 401 and "set-cookie" not in r.headers
        assert (await client.get("/ui/")).status_code == 303

    run_hub(tmp_path, scenario)


def test_the_token_becomes_an_httponly_strict_session_and_pages_have_no_inline_script(tmp_path: Path):
    async def scenario(hub: Hub, client: httpx.AsyncClient) -> None:
        r = await client.post("/ui/login", data={"token": TOKEN})
        assert r.status_code == 303
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie, cookie
        assert TOKEN not in cookie
        for page in ("/ui/", "/ui/rollouts", f"/ui/rollouts/{KEY}"):
            r = await client.get(page)
            assert r.status_code == 200, page
            csp = r.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
            scripts = re.findall(r"<script[^>]*>", r.text)
            assert scripts and all('src="/ui/static/' in s for s in scripts), scripts
            assert not re.search(r"\son\w+=", r.text), "inline event handler"
            assert "http://" not in r.text and "https://" not in r.text, "an asset from elsewhere"
        chart = await client.get("/ui/static/vendor/chart.umd.js")
        assert chart.status_code == 200 and chart.headers["content-type"].startswith("text/javascript")
        assert "Chart.js v4" in chart.text[:300]
        fleet = (await client.get("/ui/api/fleet")).json()["zones"]
        assert [z["name"] for z in fleet] == ["eks", "onprem", "vms"]
        assert {z["kind"] for z in fleet} == {"kubernetes", "vm"}
        assert all(z["reachable"] for z in fleet), fleet

    run_hub(tmp_path, scenario)


def test_actions_need_the_csrf_token_and_go_through_the_api(tmp_path: Path):
    async def scenario(hub: Hub, client: httpx.AsyncClient) -> None:
        csrf = await login(client)
        url = f"/ui/api/rollouts/{KEY}/pause"
        # A forged POST (the cookie rides along, the token does not): refused, nothing changes.
        assert (await client.post(url)).status_code == 403
        assert (await client.post(url, headers={"X-CSRF-Token": "forged"})).status_code == 403
        assert not (await hub.store.load(KEY)).paused
        r = await client.post(url, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200 and r.json()["state"] == "accepted", r.text
        api = await client.get(f"/api/v1/rollouts/{KEY}", headers={"Authorization": f"Bearer {TOKEN}"})
        assert api.json()["paused"] is True
        r = await client.post(url, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 409 and r.json()["message"] == "already paused"
        assert (await client.get(f"/ui/api/rollouts/{KEY}")).json()["paused"] is True
        # Logged out: the session is gone server-side, even for a client that kept the cookie.
        kept = client.cookies.get("federation_session")
        assert (await client.post("/ui/logout")).status_code == 403
        assert (await client.post("/ui/logout", headers={"X-CSRF-Token": csrf})).status_code == 200
        client.cookies.set("federation_session", kept or "")
        assert (await client.get("/ui/rollouts")).status_code == 303

    run_hub(tmp_path, scenario)


def test_one_rollout_holds_the_weights_of_every_step(tmp_path: Path):
    gate = Receiver()

    async def scenario(hub: Hub, client: httpx.AsyncClient) -> None:
        await login(client)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            data = (await client.get(f"/ui/api/rollouts/{KEY}")).json()
            if data["phase"] == Phase.PROGRESSING.value and data["canaryWeight"] == 4000:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the rollout did not reach 40% in 120s")
        steps = data["steps"]
        # This rollout's steps, consecutive (the log starts again with each new release).
        first = steps[0]["step"]
        assert [s["step"] for s in steps] == list(range(first, first + len(steps)))
        canary = [s["canaryWeight"] for s in steps if s["canaryWeight"]]
        assert canary == [2000, 4000], steps
        last = steps[-1]["weights"]
        assert last == {"eks/v2": 2667, "onprem/v2": 1333, "vms/v1": 6000}  # 40% by capacity (2:1)
        assert sum(last.values()) == 10000
        # Each metric's bounds, and the analysis that justified the step to 40%, per zone.
        assert data["thresholds"] == {"request-success-rate": {"min": 99.0, "max": None},
                                      "request-duration": {"min": None, "max": 500.0}}
        judged = {(c["metric"], c["zone"]): c["value"] for c in steps[-1]["checks"]}
        assert judged[("request-success-rate", None)] == 99.9 and judged[("request-duration", "eks")] == 120.0
        assert [(e["reason"], e["message"]) for e in data["events"]][-3:] == [
            ("Started", "new revision v2 in eks, onprem"), ("Advance", "canary weight 20%"), ("Advance", "canary weight 40%")]
        listed = (await client.get("/ui/api/rollouts")).json()["items"]
        assert [r["rollout"] for r in listed] == [KEY]
        assert listed[0]["inPhaseSeconds"] is not None and listed[0]["inPhaseSeconds"] >= 0
        # The gate, with the answer it gave.
        [hook] = data["webhooks"]
        assert (hook["name"], hook["type"], hook["url"]) == ("load-gate", "pre-rollout", f"{gate.base}/load-gate")
        assert hook["last"]["ok"] is True and gate.count("load-gate") >= 1

    try:
        run_hub(tmp_path, scenario, hooks=[{"name": "load-gate", "type": "pre-rollout", "url": f"{gate.base}/load-gate"}])
    finally:
        gate.close()
