"""A Flagger Graphite MetricTemplate against a real graphite-web (Debian's ``graphite-web``), its
whisper files written with Debian's ``python3-whisper``: the render API answers our query, a
percentage of two series; a series with no points in the window, or a missing one, is no data.

Skipped (saying what to install) where the packages are absent."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest

from federation.core import spec as specs
from federation.demo.procs import Supervisor, wait_for
from federation.metrics.analysis import Analyzer
from tests import fleets
from tests.integration.conftest import free_port, up

SYSTEM_PYTHON = "/usr/bin/python3"
GRAPHITE = Path("/usr/lib/python3/dist-packages/graphite")

pytestmark = pytest.mark.skipif(
    not GRAPHITE.is_dir() or subprocess.run([SYSTEM_PYTHON, "-c", "import whisper, django"],
                                            capture_output=True).returncode != 0,
    reason="needs Debian's graphite-web and python3-whisper (apt-get install graphite-web python3-whisper)")

TEMPLATE = {"apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate", "metadata": {"name": "graphite-success"},
            "spec": {"provider": {"type": "graphite", "address": "http://127.0.0.1:1"},
                     "query": "target=asPercent(\n  sumSeries(stats.{{ target }}.{{ zone }}.ok),\n"
                              "  sumSeries(stats.{{ target }}.{{ zone }}.all)\n)&from=-{{ interval }}"}}


def whisper_points(storage: Path, series: dict[str, float], ago: int = 0) -> None:
    """Five points ending ``ago`` seconds back for each series (10 s resolution), by the whisper library."""
    script = "\n".join([
        "import sys, time, whisper",
        f"now = int(time.time()) - {ago}",
        "for path, value in zip(sys.argv[1::2], sys.argv[2::2]):",
        "    whisper.create(path, [(10, 360)])",
        "    whisper.update_many(path, [(now - i * 10, float(value)) for i in range(1, 6)])",
    ])
    args = []
    for name, value in series.items():
        path = storage / "whisper" / (name.replace(".", "/") + ".wsp")
        path.parent.mkdir(parents=True, exist_ok=True)
        args += [str(path), str(value)]
    subprocess.run([SYSTEM_PYTHON, "-c", script, *args], check=True)


def graphite_web(procs: Supervisor, root: Path) -> str:
    (root / "settings").mkdir(parents=True)
    (root / "storage" / "log" / "webapp").mkdir(parents=True)
    (root / "settings" / "fedtest_graphite.py").write_text(
        f"STORAGE_DIR = {str(root / 'storage')!r}\nLOG_DIR = {str(root / 'storage' / 'log' / 'webapp')!r}\n"
        "SECRET_KEY = 'test-only'\n")
    port = free_port()
    procs.start("graphite-web", [SYSTEM_PYTHON, "-m", "django", "runserver", "--noreload", f"127.0.0.1:{port}"],
                env={"GRAPHITE_SETTINGS_MODULE": "fedtest_graphite", "PYTHONPATH": str(root / "settings"),
                     "DJANGO_SETTINGS_MODULE": "graphite.settings"}, cwd=root)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: up(f"{url}/render?target=x&format=json"), 60, "graphite-web")
    return url


def test_a_flagger_graphite_template_against_real_graphite_web(tmp_path: Path, procs: Supervisor):
    storage = tmp_path / "g" / "storage"
    whisper_points(storage, {"stats.frontend-v2.eks.ok": 97.0, "stats.frontend-v2.eks.all": 100.0,
                             "stats.frontend-v2.edge.ok": 50.0})
    whisper_points(storage, {"stats.frontend-v2.onprem.ok": 99.5, "stats.frontend-v2.onprem.all": 100.0}, ago=600)
    url = graphite_web(procs, tmp_path / "g")
    fleet = fleets.fleet([fleets.vm_zone(z, metricProviders=[{"type": "graphite", "address": url}])
                          for z in ("eks", "onprem", "edge", "vms")])
    spec = specs.CanarySpec.model_validate({
        "service": {"name": "frontend"}, "primary": {"version": "v1", "zones": ["vms"]},
        "canary": {"version": "v2", "zones": ["eks", "onprem", "edge"]},
        "analysis": {"stepWeight": 10, "metrics": [{"name": "success", "templateRef": {"name": "graphite-success"},
                                                    "interval": "2min", "thresholdRange": {"min": 99}}]}})
    analyzer = Analyzer(fleet, metric_templates={"graphite-success": specs.MetricTemplate.model_validate(TEMPLATE)})
    started = time.monotonic()
    samples = {s.zone: s for s in asyncio.run(analyzer.collect(spec, "shop"))}
    assert samples["eks"].value == pytest.approx(97.0)
    # onprem's points are older than the window: only nulls, which is no data
    assert samples["onprem"].value is None and samples["onprem"].reason == "empty result"
    # edge has no "all" series: graphite-web answers 400, no data with its reason
    assert samples["edge"].value is None and "HTTP 400: Invalid parameters" in samples["edge"].reason
    assert samples[None].value is None and "onprem: empty result" in samples[None].reason
    assert time.monotonic() - started < 10
