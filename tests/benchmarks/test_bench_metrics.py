"""Benchmark: one analysis over 20 zone endpoints against the slowest single query.

Each endpoint is a small server speaking the Prometheus HTTP API (``/api/v1/query``) with its own
fixed latency, so the figure shows the fan-out: concurrent zones cost about the slowest zone's
sequential queries, not the sum.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from federation.core import spec as specs
from federation.metrics.analysis import Analyzer
from tests import fleets

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def standins(delays: list[float]) -> Iterator[list[int]]:
    """The endpoints in a process of their own (``prom_standins``): their ports."""
    with subprocess.Popen([sys.executable, "-m", "tests.benchmarks.prom_standins", *map(str, delays)], cwd=ROOT,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line, "the Prometheus stand-ins did not start"
            yield json.loads(line)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def test_analysis_fan_out_over_20_zones():
    delays = [0.02 + 0.01 * i for i in range(20)]  # 20 ms .. 210 ms per query
    with standins(delays) as ports:
        zones = [{"name": f"z{i}", "kind": "vm", "git": {"url": "/dev/null"},
                  "prometheus": {"url": f"http://127.0.0.1:{port}", "timeout": "5s"},
                  "ingress": {"address": "127.0.0.1", "port": 1}, "hosts": [{"address": "127.0.0.1"}],
                  "knownHosts": "/dev/null"} for i, port in enumerate(ports)]
        fleet = fleets.fleet(zones, name="b")
        spec = specs.FederatedCanary.model_validate({
            "apiVersion": specs.API_VERSION, "kind": "FederatedCanary", "metadata": {"name": "f"},
            "spec": {"service": {"name": "f"}, "primary": {"version": "v1", "zones": ["z0"]},
                     "canary": {"version": "v2", "zones": [z["name"] for z in zones]},
                     "analysis": {"stepWeight": 10, "metrics": [
                         {"name": "request-success-rate", "thresholdRange": {"min": 99}},
                         {"name": "request-duration", "thresholdRange": {"max": 500}}]}}}).spec
        analyzer = Analyzer(fleet)
        asyncio.run(analyzer.collect(spec, "shop"))  # warm connections
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            samples = asyncio.run(analyzer.collect(spec, "shop"))
            runs.append(time.perf_counter() - t0)
        assert all(s.value is not None for s in samples)
        best = min(runs)
        queries_per_zone = 4  # success rate: total + good; duration: total + buckets
        print(f"\n[bench metrics] 20 zone endpoints, 2 metrics: analysis {best * 1000:.0f} ms "
              f"(runs {', '.join(f'{r * 1000:.0f}' for r in runs)} ms); slowest single query {max(delays) * 1000:.0f} ms; "
              f"= {best / max(delays):.2f}x the slowest query (goal <= 1.20x: every query at once; the endpoints "
              f"run in a process of their own); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
              f"slowest zone's queries back to back {queries_per_zone // 2 * max(delays) * 1000:.0f} ms; "
              f"all {20 * queries_per_zone} queries one after another would be {sum(delays) * queries_per_zone * 1000:.0f} ms")
