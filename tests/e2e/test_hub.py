"""The hub service on the demo fleet: API through the CLI, token required, and SIGKILLs at 20+ points."""

from __future__ import annotations

import json
import os
import random
import secrets
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx
import pytest

from federation.demo import run as demo_run
from federation.demo.fleet import LocalFleet
from federation.demo.procs import Supervisor, wait_for
from tests import gitlog
from tests.integration.conftest import free_port

pytestmark = pytest.mark.e2e
FEDCTL = [sys.executable, "-m", "federation.cli.main"]


def fedctl(*args: str, token: str | None, port: int) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FEDERATION_TOKEN"}
    if token:
        env["FEDERATION_TOKEN"] = token
    env["FEDERATION_HUB"] = f"http://127.0.0.1:{port}"
    return subprocess.run([*FEDCTL, *args], capture_output=True, text=True, env=env, timeout=60)


def trailers(bare: Path) -> list[dict[str, str]]:
    return [c for c in gitlog.commits(bare, oldest_first=True) if "Step" in c]


# The kills wait for each restarted hub to answer: on a loaded machine (the suite in two processes,
# ``make bench`` beside) 24 restarts took over four minutes, so the rollouts' deadlines count from
# the last kill, and the test's own bound is wider than the suite's 600 s.
@pytest.mark.timeout(1500)
def test_hub_service_survives_sigkill_at_20_points(tmp_path: Path):
    fleet = LocalFleet(tmp_path / "fleet")
    fleet.prepare()
    procs = Supervisor(tmp_path / "hub-logs")
    token = secrets.token_hex(16)
    (tmp_path / "token").write_text(token)
    port = free_port()
    argv = [*FEDCTL, "hub", "run", "--fleet", str(fleet.fleet_file), "--state-dir", str(tmp_path / "hub"),
            "--listen", f"127.0.0.1:{port}", "--token-file", str(tmp_path / "token"), "--tick", "0.3", "--log-json"]
    hub: dict = {}
    kills: list[float] = []
    stop = threading.Event()

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def start_hub() -> None:
        hub["p"] = procs.start(f"hub-{len(kills)}", argv)
        wait_for(ready, 60, "hub")

    def killer() -> None:
        rng = random.Random(20261122)
        while not stop.is_set() and len(kills) < 24:
            if stop.wait(rng.uniform(0.1, 1.0)):
                return
            p = hub["p"]
            p.popen.kill()  # SIGKILL: no cleanup, at whatever point the hub is
            p.popen.wait()
            procs.procs.remove(p)
            kills.append(time.monotonic())
            start_hub()

    def phase() -> tuple[str, bool]:
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/api/v1/rollouts/shop/frontend",
                          headers={"Authorization": f"Bearer {token}"}, timeout=2)
            if r.status_code == 200:
                return r.json()["phase"], r.json()["upToDate"]
        except httpx.HTTPError:
            pass
        return "", False

    try:
        fleet.start()
        # Steady load through the edge for the analysis to judge (bounded: at most 25 minutes, the
        # test's own bound; stopped with the test).
        procs.start("hey", ["hey", "-z", "1500s", "-q", "20", "-c", "4", fleet.edge_url])
        start_hub()
        # The API refuses requests without the token, and the CLI says so in one line.
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/rollouts").status_code == 401
        r = fedctl("status", token=None, port=port)
        assert r.returncode != 0 and "FEDERATION_TOKEN" in r.stderr and "Traceback" not in r.stderr
        r = fedctl("status", token="x" * 32, port=port)
        assert r.returncode == 3 and "refused the token" in r.stderr
        # Many small steps (5% up to 50%, promotion in 25% steps) so the kills land across every stage.
        pace = demo_run.Pace("4s", "10s", 5, 50, 25, 2, 0.5, 5, 300)
        demo_run.release(fleet, demo_run.canary_doc(pace, ("v1", ["vms"]), ("v2", ["eks", "onprem"])), "release v2")
        wait_for(lambda: phase()[0] != "", 60, "rollout discovered")
        # Pause and resume through the CLI.
        assert fedctl("rollout", "pause", "frontend", token=token, port=port).returncode == 0
        wait_for(lambda: json.loads(fedctl("status", "-o", "json", token=token, port=port).stdout)["items"][0]["paused"],
                 30, "paused")
        assert fedctl("rollout", "resume", "frontend", token=token, port=port).returncode == 0
        t = threading.Thread(target=killer)
        t.start()
        wait_for(lambda: phase() == ("Succeeded", True) or not t.is_alive(), 900,
                 "rollout 1 promoted, or the kills over")
        wait_for(lambda: phase() == ("Succeeded", True), 300,
                 f"rollout 1 promoted despite {len(kills)} kills")
        demo_run.release(fleet, demo_run.canary_doc(pace, ("v2", ["eks", "onprem"]), ("v3", ["eks"])), "release v3")
        wait_for(lambda: phase()[0] not in ("", "Succeeded"), 60, "rollout 2 started")
        wait_for(lambda: phase() == ("Failed", True), 300, "rollout 2 rolled back despite kills")
        stop.set()
        t.join(timeout=120)
        served = {httpx.get(fleet.edge_url, timeout=5).headers.get("x-version") for _ in range(100)}
        assert served == {"v2"}
        status = json.loads(fedctl("status", "-o", "json", token=token, port=port).stdout)
        assert status["items"][0]["phase"] == "Failed"
        # /metrics (no token: no secrets there) in Flagger's names; the restarted hub knows the end state.
        wait_for(lambda: 'federation_canary_status{name="frontend",namespace="shop"} 2.0'
                 in httpx.get(f"http://127.0.0.1:{port}/metrics").text, 30, "metrics of the failed rollout")
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert 'federation_canary_weight{namespace="shop",workload="frontend"} 0.0' in text
        # `rollout watch --until-done` prints the state and exits 1 for a failed rollout.
        w = fedctl("rollout", "watch", "frontend", "--until-done", "--interval", "0.5", token=token, port=port)
        assert w.returncode == 1 and "Failed" in w.stdout
    finally:
        stop.set()
        procs.stop_all()
        fleet.stop()
    assert len(kills) >= 20, f"only {len(kills)} kills happened"
    # Git: exactly one commit per step per repo; weights never move backwards except by rollback.
    mesh = trailers(Path(fleet.git_url("mesh")))
    per_step = defaultdict(int)
    for c in mesh:
        per_step[(c["Rollout"], int(c["Step"]))] += 1
    assert all(n == 1 for n in per_step.values()), per_step
    assert sorted(s for _, s in per_step) == list(range(1, len(per_step) + 1))
    for zone in ("eks", "onprem", "vms"):
        counts = defaultdict(int)
        for c in trailers(Path(fleet.git_url(zone))):
            counts[int(c["Step"])] += 1
        assert all(n == 1 for n in counts.values()), (zone, counts)
    by_target = defaultdict(list)
    for c in sorted(mesh, key=lambda c: int(c["Step"])):
        by_target[c["Target"]].append((c["Stage"], int(c["Canary-Weight"])))
    for target, seq in by_target.items():
        weights = [w for stage, w in seq if stage != "rollback"]
        assert weights == sorted(weights), (target, seq)
    stages = [s for seq in by_target.values() for s, _ in seq]
    assert stages.count("rollback") == 1 and "finalising" in stages
    print(f"{len(kills)} SIGKILLs; {len(per_step)} steps, each exactly one commit per repo")
