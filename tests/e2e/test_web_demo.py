"""The web dashboard, Flagger's series and the Grafana dashboard on a real demo-fleet rollout.

The demo fleet (``fedctl demo --fleet-only``: Git repos, three zones with fed-agent over SSH, an
ingress Envoy and a Prometheus each, the edge Envoy), a hub of its own (``fedctl hub run``), load
through the edge (``hey``) and a Prometheus scraping the hub's ``/metrics`` and federating the
zones' Envoy series. A release is pushed to the mesh repo; headless Chromium (Debian's chromium
and chromium-driver, selenium) watches it on the one-rollout page without reloading — the chart
grows, the weight bars move, the events timeline fills, pause and resume clicks show the hub's
answer — while a sampler reads Flagger's series on ``/metrics`` (``flagger_canary_weight``
primary/canary, ``flagger_canary_status``, ...) and they follow the rollout. At the end every
Grafana panel query and template variable query returns data from that Prometheus (its HTTP
API); only the 5xx panel may be empty (Envoy creates that series at the first 5xx answer, and a
healthy rollout may have none).
``FEDERATION_SCREENSHOTS=docs`` saves the three pages from this run.

Every process started here is stopped by its process group (the fleet's from its processes.json).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from selenium import webdriver
from selenium.webdriver.common.by import By

from federation import specfiles
from federation.demo import run as demo_run
from federation.demo.procs import wait_for
from federation.gitops import repo as gitrepo
from tests import chromium
from tests.integration.conftest import free_port
from tests.integration.test_grafana_dashboard import expressions, panels
from tests.integration.test_web_browser import console_errors, poll, shoot

pytestmark = pytest.mark.e2e

KEY = "shop/frontend"
FEDCTL = [sys.executable, "-m", "federation.cli.main"]
# Slow enough to watch and click in (an analysis every 5 s, three canary steps, two promotion steps).
PACE = demo_run.Pace("5s", "10s", 20, 60, 50, 3, 0.5, 5, 180)
# The one panel a healthy rollout may leave empty: 5xx answers (Envoy creates the series at the
# first one). The hub's failure counters start at 0, so their panels answer.
EMPTY_WHEN_HEALTHY = {'envoy_response_code_class="5"'}
# Grafana's variables for a query sent to Prometheus directly (every namespace, rollout, zone).
VARS = {"__rate_interval": "30s", "__interval": "5s", "__range": "15m", "namespace": ".*", "rollout": ".*",
        "zone": ".*"}


class Groups:
    """Process groups to stop at the end, newest first; the fleet's are read from its processes.json."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.insert(0, p)
        return p

    def stop(self, fleet_processes: Path) -> None:
        groups = [p.pid for p in self.procs]
        with contextlib.suppress(OSError, ValueError):
            groups += list(json.loads(fleet_processes.read_text()).values())  # agents stop their apps
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGTERM)
        for p in self.procs:  # reaped, or their groups would look alive
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=30)
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: not any(_alive(g) for g in groups), 30, "every process stopped")
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        for p in self.procs:
            p.wait(timeout=30)


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


Sample = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(hub: str) -> Sample:
    text = httpx.get(f"{hub}/metrics", timeout=5).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def at(sample: Sample, name: str, /, **labels: str) -> float | None:
    return sample.get((name, frozenset(labels.items())))


class Sampler(threading.Thread):
    """Reads the hub's /metrics every 0.2 s while the rollout runs: Flagger's weights and status."""

    def __init__(self, hub: str) -> None:
        super().__init__(name="metrics-sampler", daemon=True)
        self.hub, self.done = hub, threading.Event()
        self.samples: list[tuple[float | None, float | None, float | None]] = []

    def run(self) -> None:
        while not self.done.wait(0.2):
            with contextlib.suppress(httpx.HTTPError):
                s = scrape(self.hub)
                self.samples.append((at(s, "flagger_canary_weight", workload="frontend", namespace="shop"),
                                     at(s, "flagger_canary_weight", workload="frontend-primary", namespace="shop"),
                                     at(s, "flagger_canary_status", name="frontend", namespace="shop")))


def prometheus_config(hub_port: int, zone_proms: list[str]) -> dict[str, Any]:
    return {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": "federation-hub", "static_configs": [{"targets": [f"127.0.0.1:{hub_port}"]}]},
                # The zones' Envoy series, as a global Prometheus gets them (each with its zone label).
                {"job_name": "zones", "metrics_path": "/federate", "honor_labels": True,
                 "params": {"match[]": ['{__name__=~"envoy_cluster_.*"}']},
                 "static_configs": [{"targets": [u.removeprefix("http://") for u in zone_proms]}]}]}


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=30).json()
    assert r["status"] == "success", (expr, r)
    return list(r["data"]["result"])


def expand(expr: str) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: VARS[m.group(1)], expr)


def chart(b: webdriver.Chrome) -> dict[str, Any] | None:
    return b.execute_script("const c = Chart.getChart('weights-chart'); return c && "  # type: ignore[no-any-return]
                            "{labels: c.data.labels, series: c.data.datasets.map(d => [d.label, d.data])};")


def text(b: webdriver.Chrome, element: str) -> str:
    """The text of the element with that id, read in the page (the page replaces its parts as
    updates arrive); empty while it has not drawn it yet."""
    return str(b.execute_script("const e = document.getElementById(arguments[0]); return e ? e.innerText : '';",
                                element))


def meters(b: webdriver.Chrome) -> list[str]:
    """The weight bars' values in the rollout's summary."""
    return list(b.execute_script("return [...document.querySelectorAll('#summary meter')].map(m => m.value);"))


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    with chromium.browser() as b:
        yield b


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The demo fleet, a hub on it, load through the edge and a Prometheus scraping the hub."""
    work = tmp_path / "fleet"
    groups = Groups()
    try:
        r = subprocess.run([*FEDCTL, "demo", "--fleet-only", "--workdir", str(work)], capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        fleet = specfiles.read_documents(work / "fleet.yaml")[0]
        token = tmp_path / "hub-token"
        token.write_text("w" * 40)
        token.chmod(0o600)
        port = free_port()
        hub = f"http://127.0.0.1:{port}"
        groups.start([*FEDCTL, "hub", "run", "--fleet", str(work / "fleet.yaml"), "--state-dir",
                      str(tmp_path / "hub-state"), "--listen", f"127.0.0.1:{port}", "--token-file", str(token),
                      "--tick", "0.5"], tmp_path / "hub.log")
        wait_for(lambda: _ok(f"{hub}/readyz"), 120, "the hub's /readyz")
        edge = fleet["spec"]["mesh"]["edge"]["listener"]
        groups.start(["hey", "-z", "600s", "-q", "20", "-c", "4", "-disable-keepalive",
                      f"http://{edge['address']}:{edge['port']}/"], tmp_path / "hey.log")
        prom_port = free_port()
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(yaml.safe_dump(prometheus_config(port, [z["prometheus"]["url"] for z in fleet["spec"]["zones"]])))
        groups.start(["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                      f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"], tmp_path / "prometheus.log")
        prom = f"http://127.0.0.1:{prom_port}"
        wait_for(lambda: _ok(f"{prom}/-/ready"), 60, "Prometheus")
        yield {"work": work, "hub": hub, "token": token.read_text(), "prom": prom, "logs": tmp_path}
    finally:
        groups.stop(work / "processes.json")


def release(work: Path) -> str:
    """The release engineer's commit of the FederatedCanary to the mesh repo."""
    doc = demo_run.canary_doc(PACE, ("v1", ["vms"]), ("v2", ["eks", "onprem"]))
    r = gitrepo.Repo(str(work / "git" / "mesh.git"), "main", work / "release-engineer")
    r.ensure()

    def edit(repo: gitrepo.Repo) -> list[str]:
        (repo.workdir / "canaries").mkdir(exist_ok=True)
        (repo.workdir / "canaries" / "frontend.yaml").write_text(specfiles.dump([doc]))
        return ["canaries/frontend.yaml"]

    sha = r.commit_and_push(edit, "release v2 of frontend to eks, onprem", author="Release <release@localhost>")
    assert sha
    return sha


def test_a_demo_fleet_rollout_in_chromium_on_metrics_and_in_grafana_queries(demo: dict[str, Any],
                                                                            browser: webdriver.Chrome):
    b, hub, prom = browser, demo["hub"], demo["prom"]
    auth = {"Authorization": f"Bearer {demo['token']}"}

    def api(path: str) -> Any:
        return httpx.get(f"{hub}{path}", headers=auth, timeout=30).json()

    def hub_log() -> str:
        return (demo["logs"] / "hub.log").read_text()[-4000:]

    b.get(f"{hub}/ui/login")
    b.find_element(By.ID, "token").send_keys(demo["token"])
    b.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    poll(lambda: b.current_url == f"{hub}/ui/", 90, "the fleet page after login")
    zones = poll(lambda: b.execute_script("return [...document.querySelectorAll('#zones tbody tr td:first-child')]"
                                          ".map(td => td.innerText);"), 90, "the fleet table")
    assert zones == ["eks", "onprem", "vms"]

    sampler = Sampler(hub)
    sampler.start()
    release(demo["work"])
    try:
        poll(lambda: (api(f"/api/v1/rollouts/{KEY}").get("canaryWeight") or 0) > 0, 120, "the first canary step")
    except AssertionError:
        raise AssertionError(hub_log()) from None

    # The one-rollout page, open while the rollout walks: updates arrive by its event stream.
    b.get(f"{hub}/ui/rollouts/{KEY}")
    poll(lambda: b.execute_script("return document.body.dataset.live") == "sse", 60, "the page's event stream")
    b.execute_script("window.notReloaded = true;")
    first = poll(lambda: chart(b), 60, "the weight chart")
    bars = poll(lambda: meters(b), 60, "the weight bars")
    poll(lambda: len((chart(b) or first)["labels"]) > len(first["labels"]), 120, "the chart growing")
    poll(lambda: meters(b) != bars, 60, "the weight bars moving")
    poll(lambda: b.execute_script("return document.querySelectorAll('#events tbody tr').length") > 0, 60,
         "the events timeline")
    assert b.execute_script("return window.notReloaded === true") is True
    assert int(b.execute_script("return document.body.dataset.pushed")) > 0

    # Pause and resume by clicks: the hub's answers in the page, the API agrees, the page follows.
    b.find_element(By.ID, "action-pause").click()
    poll(lambda: text(b, "answer").startswith("pause: accepted"), 60, "the answer to pause")
    assert api(f"/api/v1/rollouts/{KEY}")["paused"] is True
    poll(lambda: "(paused)" in text(b, "summary"), 30, "the page showing the pause")
    b.find_element(By.ID, "action-pause").click()
    poll(lambda: text(b, "answer").startswith("pause: rejected"), 60, "a second pause refused")
    b.find_element(By.ID, "action-resume").click()
    poll(lambda: text(b, "answer").startswith("resume: accepted"), 60, "the answer to resume")
    assert api(f"/api/v1/rollouts/{KEY}")["paused"] is False
    assert b.execute_script("return window.notReloaded === true") is True
    # The one error logged: the network's 409 of the refused second pause.
    assert [e for e in console_errors(b) if not ("/pause" in e["message"] and "409" in e["message"])] == []

    # The other two pages mid-rollout (for the screenshots), then back to the rollout until it ends.
    b.get(f"{hub}/ui/")
    poll(lambda: "step" in text(b, "zones"), 60, "the fleet page with the rollout's steps")
    shoot(b, "web-fleet")
    b.get(f"{hub}/ui/rollouts")
    poll(lambda: b.execute_script("return document.querySelectorAll('#rollout-table meter').length") == 3, 60,
         "the rollouts page's weight bars")
    shoot(b, "web-rollouts")
    assert console_errors(b) == []
    b.get(f"{hub}/ui/rollouts/{KEY}")
    try:
        poll(lambda: "Succeeded" in text(b, "summary"), 240, "the rollout promoted, in the page")
    except AssertionError:
        raise AssertionError(hub_log()) from None
    view = api(f"/api/v1/rollouts/{KEY}")
    assert view["phase"] == "Succeeded", view
    steps = b.execute_async_script("const done = arguments[arguments.length - 1];"
                                   f"fetch('/ui/api/rollouts/{KEY}').then(r => r.json()).then(v => done(v.steps));")
    poll(lambda: len((chart(b) or first)["labels"]) == len(steps), 30, "one chart point per step")
    assert len(steps) >= 5
    b.set_window_size(1280, 2600)
    shoot(b, "web-rollout")
    assert console_errors(b) == []

    # Flagger's series followed the rollout: the canary steps' weights, both sides adding to 100,
    # running (0) then succeeded (1); now primary 100, canary 0.
    sampler.done.set()
    sampler.join(10)
    seen = [s for s in sampler.samples if s[0] is not None]
    canary_weights = {s[0] for s in seen}
    assert {20, 40, 60} <= canary_weights, canary_weights
    assert canary_weights <= {w["canaryWeight"] / 100 for w in steps} | {0}, (canary_weights, steps)
    assert all(c + p == 100 for c, p, _ in seen if p is not None)
    statuses = [s[2] for s in seen]
    assert 0 in statuses and statuses[-1] == 1
    end = scrape(hub)
    assert at(end, "flagger_canary_weight", workload="frontend-primary", namespace="shop") == 100
    assert at(end, "flagger_canary_weight", workload="frontend", namespace="shop") == 0
    assert at(end, "flagger_canary_total", namespace="shop") == 1
    assert at(end, "flagger_canary_successes_total", name="frontend", namespace="shop",
              deployment_strategy="canary", analysis_status="completed") == 1
    rate = at(end, "flagger_canary_metric_analysis", name="frontend", namespace="shop", metric="request-success-rate")
    assert rate is not None and rate >= 99, rate  # measured by the zones' Prometheus on the real load
    assert (at(end, "flagger_canary_duration_seconds_count", name="frontend", namespace="shop") or 0) > 0
    assert any(k[0] == "flagger_info" and v == 1 for k, v in end.items())

    # Grafana: every panel's query returns data from a real Prometheus scraping the hub (and the
    # zones' Envoy series, federated), once it has seen the rollout end.
    wait_for(lambda: bool(query(prom, 'flagger_canary_status{name="frontend"} == 1')), 60,
             "Prometheus seeing the rollout succeed")
    empty, answered = [], 0
    for ref, expr in expressions():
        got = query(prom, expand(expr))
        if got:
            answered += 1
        else:
            empty.append((ref, expr))
    assert all(any(m in e for m in EMPTY_WHEN_HEALTHY) for _, e in empty), empty
    dash = json.loads((Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "federation.json").read_text())
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            metric = v["definition"].removeprefix("label_values(").rsplit(",", 1)[0]
            assert query(prom, expand(metric)), v["definition"]
    assert answered >= len(expressions()) - len(EMPTY_WHEN_HEALTHY)
    assert panels(dash)
    print(f"grafana: {answered} of {len(expressions())} panel queries returned data; empty: {empty}")
