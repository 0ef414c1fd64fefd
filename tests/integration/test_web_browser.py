"""The web dashboard in headless Chromium (Debian's chromium and chromium-driver, driven by
selenium) against a hub served by uvicorn on loopback (the real Hub, worker, core, API and web
pages; in-memory zones): a page without a session goes to login; after login the pages load
without console errors; the one-rollout chart holds one point per step taken and one series per
(zone, version); a click on pause is seen in the API and in the page; a forged POST without the
CSRF token is refused. With FEDERATION_SCREENSHOTS=DIR the three pages are saved there as PNG."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from federation.hub import api, webstream
from federation.hub.service import Hub
from federation.hub.store import MemoryStore
from tests import chromium, hubfakes
from tests.integration.conftest import free_port

TOKEN = "t" * 32
KEY = "shop/frontend"


def poll(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"{what}: not after {timeout:g}s")


@pytest.fixture
def hub_url(tmp_path: Path) -> Iterator[str]:
    """A hub on 127.0.0.1 (uvicorn in its own thread and event loop), its rollout under way."""
    parts = hubfakes.MemoryParts(hubfakes.fleet(), [hubfakes.canary(interval="2s")])
    hub = Hub(hubfakes.fleet(), tmp_path / "hub", tick=0.05, discover_every=1.0, store=MemoryStore(), parts=parts)
    port = free_port()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(api.serve(hub, TOKEN, "127.0.0.1", port),),
                              name="hub", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False
    try:
        poll(ready, 60, "the hub's /readyz")
        yield url
    finally:
        loop.call_soon_threadsafe(hub.stop)
        thread.join(30)
        loop.close()


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    with chromium.browser() as b:
        yield b


def api_get(url: str, path: str) -> Any:
    return httpx.get(f"{url}{path}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).json()


def console_errors(b: webdriver.Chrome) -> list[dict[str, Any]]:
    return [e for e in b.get_log("browser") if e["level"] == "SEVERE"]


def shoot(b: webdriver.Chrome, name: str) -> None:
    where = os.environ.get("FEDERATION_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        assert b.save_screenshot(str(Path(where) / f"{name}.png"))


def test_the_dashboard_in_chromium(hub_url: str, browser: webdriver.Chrome):
    b = browser
    # Without a session: the login page.
    b.get(f"{hub_url}/ui/rollouts/{KEY}")
    assert b.current_url == f"{hub_url}/ui/login"
    b.find_element(By.ID, "token").send_keys(TOKEN)
    b.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    poll(lambda: b.current_url == f"{hub_url}/ui/", 90, "the fleet page after login")
    assert not any(c["name"] == "federation_session" and not c["httpOnly"] for c in b.get_cookies())
    assert b.execute_script("return document.cookie") == "", "the session cookie is visible to scripts"
    rows = poll(lambda: b.find_elements(By.CSS_SELECTOR, "#zones tbody tr"), 90, "the fleet table")
    assert [r.find_element(By.CSS_SELECTOR, "td").text for r in rows] == ["eks", "onprem", "vms"]
    shoot(b, "web-fleet")
    assert console_errors(b) == []

    # The rollout at 40%: the rollouts page lists it with its weights.
    poll(lambda: api_get(hub_url, f"/api/v1/rollouts/{KEY}")["canaryWeight"] >= 4000, 120, "the canary at 40%")
    b.get(f"{hub_url}/ui/rollouts")
    row = poll(lambda: b.find_elements(By.CSS_SELECTOR, "#content tbody tr"), 90, "the rollouts table")[0]
    assert row.find_element(By.CSS_SELECTOR, "a").text == KEY
    assert len(row.find_elements(By.CSS_SELECTOR, "meter")) == 3
    shoot(b, "web-rollouts")
    assert console_errors(b) == []

    # One rollout, live: a pause through the API reaches the open page by its event stream (a real
    # EventSource), without a reload; a click on resume shows the hub's answer.
    b.get(f"{hub_url}/ui/rollouts/{KEY}")
    poll(lambda: b.execute_script("return document.body.dataset.live") == "sse", 60, "the page's event stream")
    b.execute_script("window.notReloaded = true;")
    pushed = int(b.execute_script("return document.body.dataset.pushed"))
    assert httpx.post(f"{hub_url}/api/v1/rollouts/{KEY}/pause", headers={"Authorization": f"Bearer {TOKEN}"},
                      timeout=60).json()["state"] == "accepted"
    poll(lambda: "(paused)" in b.find_element(By.ID, "summary").text, 20, "the pause pushed to the page")
    assert b.execute_script("return window.notReloaded === true && document.body.dataset.live") == "sse"
    assert int(b.execute_script("return document.body.dataset.pushed")) > pushed
    b.find_element(By.ID, "action-resume").click()
    poll(lambda: b.find_element(By.ID, "answer").text.startswith("resume: accepted"), 90, "the hub's answer to resume")
    poll(lambda: "(paused)" not in b.find_element(By.ID, "summary").text, 20, "the resume pushed to the page")
    assert b.execute_script("return window.notReloaded") is True
    # Pause by a click; the API and the page say so.
    b.find_element(By.ID, "action-pause").click()
    answer = poll(lambda: (lambda t: t if t.startswith("pause") else "")(b.find_element(By.ID, "answer").text),
                  90, "the hub's answer")
    assert answer.startswith("pause: accepted"), answer
    assert api_get(hub_url, f"/api/v1/rollouts/{KEY}")["paused"] is True
    poll(lambda: "(paused)" in b.find_element(By.ID, "summary").text, 90, "the page showing the pause")
    # The chart: one point per step taken, one series per (zone, version) those steps weighed.
    view = b.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        f"fetch('/ui/api/rollouts/{KEY}').then(r => r.json()).then(done);")
    steps = view["steps"]
    subsets = sorted({s for step in steps for s in step["weights"]})

    def chart_matches() -> bool:
        data = b.execute_script("const c = Chart.getChart('weights-chart'); return c && "
                                "{labels: c.data.labels, series: c.data.datasets.map(d => [d.label, d.data])};")
        return bool(data) and len(data["labels"]) == len(steps) and \
            sorted(s for s, _ in data["series"]) == subsets and \
            all(len(points) == len(steps) for _, points in data["series"])
    poll(chart_matches, 90, "the chart's series and points")
    assert len(steps) >= 3 and len(subsets) == 3
    # Each metric per zone against its bound, one point per step.
    rate = b.execute_script("const c = Chart.getChart('metric-request-success-rate'); return c && "
                            "c.data.datasets.map(d => [d.label, d.data.length]);")
    assert sorted(rate) == sorted([[z, len(steps)] for z in ("eks", "global", "onprem")] + [["min 99", len(steps)]])
    b.set_window_size(1280, 2400)  # the whole page: weights, each metric's chart, events, steps
    shoot(b, "web-rollout")
    # A forged POST from the page's origin, cookie and all, without the CSRF token: refused.
    status = b.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        f"fetch('/ui/api/rollouts/{KEY}/resume', {{method: 'POST'}}).then(r => done(r.status));")
    assert status == 403
    assert api_get(hub_url, f"/api/v1/rollouts/{KEY}")["paused"] is True
    assert [e for e in console_errors(b) if "/resume" not in e["message"]] == []


def test_without_event_source_the_pages_poll(hub_url: str, browser: webdriver.Chrome):
    """A browser without EventSource (removed before the page's scripts run) still sees updates:
    the page polls (every 2 s; the status line says when it last updated)."""
    b = browser
    b.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": "delete window.EventSource;"})
    b.get(f"{hub_url}/ui/login")
    b.find_element(By.ID, "token").send_keys(TOKEN)
    b.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    poll(lambda: b.current_url == f"{hub_url}/ui/", 90, "the fleet page after login")
    b.get(f"{hub_url}/ui/rollouts/{KEY}")
    poll(lambda: b.find_elements(By.ID, "summary"), 60, "the rollout page")
    assert b.execute_script("return typeof window.EventSource") == "undefined"
    b.execute_script("window.notReloaded = true;")
    # Updated again and again (the status line's time moves) without a reload and without a stream.
    first = poll(lambda: b.find_element(By.ID, "status").text, 30, "the first update")
    poll(lambda: b.find_element(By.ID, "status").text not in ("", first), 30, "an update by polling")
    assert "polling every 2s" in b.find_element(By.ID, "status").text
    assert b.execute_script("return [window.notReloaded, document.body.dataset.live, document.body.dataset.pushed]") \
        == [True, "polling", "0"]
    assert console_errors(b) == []


def test_the_page_reconnects_its_stream(hub_url: str, browser: webdriver.Chrome, monkeypatch: pytest.MonkeyPatch):
    """Streams end after ``webstream.MAX_AGE`` (2 s here): the page polls while its stream is down,
    the browser reconnects it by itself (``retry``, ``Last-Event-ID``) and updates arrive by it
    again — a pause through the API reaches the page pushed, all without a reload."""
    monkeypatch.setattr(webstream, "MAX_AGE", 2.0)
    b = browser
    b.get(f"{hub_url}/ui/login")
    b.find_element(By.ID, "token").send_keys(TOKEN)
    b.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    poll(lambda: b.current_url == f"{hub_url}/ui/", 90, "the fleet page after login")
    b.get(f"{hub_url}/ui/rollouts/{KEY}")
    poll(lambda: b.execute_script("return document.body.dataset.live") == "sse", 60, "the page's event stream")
    b.execute_script("window.notReloaded = true;")
    poll(lambda: b.execute_script("return document.body.dataset.live") == "polling", 30, "the stream ended")
    poll(lambda: b.execute_script("return document.body.dataset.live") == "sse", 30, "the stream reconnected")
    pushed = int(b.execute_script("return document.body.dataset.pushed"))
    assert httpx.post(f"{hub_url}/api/v1/rollouts/{KEY}/pause", headers={"Authorization": f"Bearer {TOKEN}"},
                      timeout=60).json()["state"] == "accepted"
    poll(lambda: int(b.execute_script("return document.body.dataset.pushed")) > pushed, 20,
         "an update pushed by the stream, or by its reconnect")
    poll(lambda: "(paused)" in b.find_element(By.ID, "summary").text, 20, "the pause in the page")
    assert b.execute_script("return window.notReloaded") is True
    assert console_errors(b) == []
