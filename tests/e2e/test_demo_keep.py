"""`fedctl demo --fleet-only` (the --keep path): the fleet outlives the command that started it,
and the printed stop line ends every process it started."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from federation.demo.procs import wait_for

pytestmark = pytest.mark.e2e


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_kept_fleet_survives_the_launcher_and_stops_by_the_printed_groups(tmp_path: Path):
    workdir = tmp_path / "demo"
    groups: list[int] = []
    try:
        r = subprocess.run([sys.executable, "-m", "federation.cli.main", "demo", "--fleet-only", "--workdir",
                            str(workdir)], capture_output=True, text=True, timeout=240)
        with contextlib.suppress(OSError, ValueError):
            groups = list(json.loads((workdir / "processes.json").read_text()).values())
        assert r.returncode == 0, r.stdout + r.stderr
        line = next(ln for ln in r.stdout.splitlines() if "kill -TERM --" in ln)
        printed = [int(g) for g in re.findall(r"-(\d+)", line.split("--", 1)[1])]
        assert sorted(printed) == sorted(groups) and len(printed) == 10  # 4 Envoys, 3 Prometheus, 3 agents
        # The launcher has exited: every group it printed is still there, and every Envoy answers.
        assert all(_group_alive(g) for g in printed)
        fleet = (workdir / "fleet.yaml").read_text()
        admins = [int(p) for p in re.findall(r"adminPort: (\d+)", fleet)]
        edge_admin = int(re.search(r"admin:\s*\n\s*address: 127.0.0.1\s*\n\s*port: (\d+)", fleet).group(1))
        edge_port = int(re.search(r"listener:\s*\n\s*address: 127.0.0.1\s*\n\s*port: (\d+)", fleet).group(1))
        for admin in [*admins, edge_admin]:
            wait_for(lambda a=admin: _up(f"http://127.0.0.1:{a}/ready"), 30, f"Envoy admin {admin}")
        answer = httpx.get(f"http://127.0.0.1:{edge_port}/", timeout=5)  # a refused connection raises here
        assert answer.status_code in (200, 503)
        # clusters and agents status check every ingress Envoy and the edge Envoy too.
        fedctl = [sys.executable, "-m", "federation.cli.main"]
        fleet_file = str(workdir / "fleet.yaml")
        ok = subprocess.run([*fedctl, "clusters", "--fleet", fleet_file], capture_output=True, text=True, timeout=120)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert ok.stdout.count("ingress envoy") == 3 and "edge envoy" in ok.stdout and "LIVE; routes frontend@" in ok.stdout
        edge = json.loads((workdir / "processes.json").read_text())["envoy-edge"]
        os.killpg(edge, signal.SIGSTOP)  # the edge stops answering (and comes back below)
        try:
            down = subprocess.run([*fedctl, "clusters", "--fleet", fleet_file], capture_output=True, text=True,
                                  timeout=120)
            agents = subprocess.run([*fedctl, "agents", "status", "--fleet", fleet_file, "-o", "json"],
                                    capture_output=True, text=True, timeout=120)
        finally:
            os.killpg(edge, signal.SIGCONT)
        assert down.returncode == 3 and re.search(r"edge envoy.*NO.*timed out", down.stdout), down.stdout
        assert agents.returncode == 3, agents.stdout + agents.stderr
        rows = json.loads(agents.stdout)
        assert [r["reachable"] for r in rows if r.get("envoy") == "edge"] == [False]
        assert all(r["reachable"] for r in rows if r.get("envoy") != "edge")
        # The printed line stops everything.
        subprocess.run(["bash", "-c", line.strip()], check=True, timeout=30)
        wait_for(lambda: not any(_group_alive(g) for g in printed), 60, "every kept process group stopped")
        assert not _up(f"http://127.0.0.1:{edge_admin}/ready")
    finally:
        for g in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(g, signal.SIGKILL)
