"""``fedctl metrics`` exits by what it found: 0 with "no traffic yet" when there is nothing to judge,
1 when a check failed on real figures, 3 with one line per zone (endpoint named, no URL-encoded
query) when a zone's Prometheus is broken."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from federation import specfiles
from federation.cli.metrics_cmd import judged
from federation.core.analysis import Verdict
from federation.core.state import CheckResult
from federation.demo import run as demo_run
from federation.demo.fleet import LocalFleet
from federation.demo.procs import Supervisor, wait_for
from tests.integration.conftest import up


def fedctl_metrics(fleet: LocalFleet, canary: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDERATION_")}
    return subprocess.run([sys.executable, "-m", "federation.cli.main", "metrics", "frontend", "--fleet",
                           str(fleet.fleet_file), "--canary", str(canary)], capture_output=True, text=True,
                          env=env, timeout=120)


def test_no_traffic_yet_is_not_a_failure_and_a_broken_prometheus_is_named(tmp_path: Path, procs: Supervisor):
    fleet = LocalFleet(tmp_path / "fleet")
    fleet.prepare()
    canary = tmp_path / "canary.yaml"
    canary.write_text(specfiles.dump([demo_run.canary_doc(demo_run.Pace.fast(), ("v1", ["vms"]),
                                                          ("v2", ["eks", "onprem"]))]))
    for z in fleet.zones:
        if z.name in ("eks", "onprem"):
            cfg = fleet._prometheus_config(z)
            procs.start(f"prom-{z.name}", ["prometheus", f"--config.file={cfg}",
                                           f"--storage.tsdb.path={cfg.parent / 'data'}",
                                           f"--web.listen-address=127.0.0.1:{z.prom_port}", "--log.level=warn"])
            wait_for(lambda z=z: up(f"http://127.0.0.1:{z.prom_port}/-/ready"), 60, f"prometheus {z.name}")
    r = fedctl_metrics(fleet, canary)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no traffic yet to v2" in r.stdout
    procs.stop(next(p for p in procs.procs if p.name == "prom-onprem"))
    r = fedctl_metrics(fleet, canary)
    onprem = next(z for z in fleet.zones if z.name == "onprem")
    assert r.returncode == 3, r.stdout + r.stderr
    assert r.stderr.strip() == f"zone onprem: prometheus http://127.0.0.1:{onprem.prom_port}: Connection refused"
    assert "query=" not in r.stdout + r.stderr and "%28" not in r.stdout + r.stderr and "Traceback" not in r.stderr


def test_a_failed_check_on_real_figures_exits_1():
    failed = Verdict((CheckResult("request-success-rate", None, 91.0, "fail", "91 < 99"),))
    with pytest.raises(typer.Exit) as exc:
        judged(failed, {}, "v2")
    assert exc.value.exit_code == 1
    query_broken = Verdict((CheckResult("latency", "eks", None, "nodata", "MetricTemplate 'x' not found"),))
    with pytest.raises(typer.Exit) as exc:
        judged(query_broken, {}, "v2")
    assert exc.value.exit_code == 1
    judged(Verdict((CheckResult("request-success-rate", None, 99.9, "pass", ""),)), {}, "v2")
