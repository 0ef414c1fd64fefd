"""The agent's systemd runner. The unit files it writes are checked by real systemd
(``systemd-analyze verify``); the run-time verbs go to tests/fakes/systemctl.py, because systemd is
not the init system on this machine. Real app processes are started, health-checked, restarted when
they die, adopted by a new agent, and stopped with their unit removed when their version retires."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from federation.demo.procs import wait_for
from vmagent import converge, state, units

pytestmark = pytest.mark.integration
FAKE = Path(__file__).resolve().parents[1] / "fakes" / "systemctl.py"
BIN = Path(sys.executable).parent


def release(step: int, *versions: str) -> dict:
    return {"revision": f"r{step}", "step": step, "manifests": [{
        "apiVersion": "federation.io/v1alpha1", "kind": "ZoneRelease", "metadata": {"name": "frontend"},
        "spec": {"service": "frontend",
                 "versions": {v: {"command": ["fed-demo-app", "--service", "frontend", "--version", v, "--port", "${PORT}"],
                                  "env": {"GREETING": "50% off $today"}, "replicas": 1, "health": "/healthz"}
                              for v in ("v1", "v2")},
                 "serving": {v: 10000 // len(versions) for v in versions}}}]}


def verify(unit_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", str(unit_file)], capture_output=True, text=True, timeout=60)


def test_rendered_unit_passes_systemd_analyze_verify(tmp_path: Path):
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze (package systemd) is installed by make install")
    text = units.render_unit("frontend/v1/0", "frontend", "v1", [str(BIN / "fed-demo-app"), "--port", "31000"],
                             {"PORT": "31000", "QUOTE": 'say "hi" 100% $HOME'}, str(tmp_path / "v1.log"))
    good = tmp_path / units.unit_name("frontend/v1/0")
    good.write_text(text)
    r = verify(good)
    assert r.returncode == 0, r.stderr
    bad = tmp_path / "fed-broken.service"
    bad.write_text(text.replace(str(BIN / "fed-demo-app"), "/nonexistent/fed-demo-app"))
    assert verify(bad).returncode != 0  # the check can fail
    with pytest.raises(ValueError, match="absolute path"):
        units.render_unit("k", "s", "v", ["relative-binary"], {}, "/tmp/x.log")


def test_agent_runs_instances_as_systemd_units(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    unit_dir, fake_state = tmp_path / "units", tmp_path / "systemd"
    unit_dir.mkdir()
    monkeypatch.setenv("FAKE_SYSTEMD_UNIT_DIR", str(unit_dir))
    monkeypatch.setenv("FAKE_SYSTEMD_STATE", str(fake_state))
    monkeypatch.setenv("PATH", f"{BIN}:{os.environ['PATH']}")
    config = converge.Config(str(tmp_path / "agent"), "vms", None, None, ports=(31600, 31620), runner="systemd",
                             unit_dir=str(unit_dir), systemctl=str(FAKE))

    def converge_until(agent: converge.Agent, step: int) -> None:
        def done() -> bool:
            agent.converge_once()
            return agent.applied_step == step
        wait_for(done, 30, f"step {step} applied")

    agent = converge.Agent(config)
    try:
        assert agent.status()["runner"] == "systemd"
        agent.apply(release(1, "v1"))
        converge_until(agent, 1)
        unit = unit_dir / units.unit_name("frontend/v1/0")
        assert unit.exists() and verify(unit).returncode == 0, verify(unit).stderr
        (inst,) = agent.sup.instances.values()
        assert inst.unit == unit.name and inst.healthy
        # Environment= expands specifiers (%) but not variables: "$" stays as written.
        assert 'Environment="GREETING=50%% off $today"' in unit.read_text()
        # Drift: the service dies behind the agent's back; the agent sees the unit inactive and starts it.
        os.killpg(inst.pid, signal.SIGKILL)
        wait_for(lambda: (agent.converge_once(), agent.sup.instances["frontend/v1/0"].restarts == 1)[1], 30,
                 "unit restarted by the agent")
        pid = agent.sup.instances["frontend/v1/0"].pid
        # A new agent (restart) adopts the active unit: no second instance.
        agent = converge.Agent(config)
        assert {k: i.pid for k, i in agent.sup.instances.items()} == {"frontend/v1/0": pid}
        # A new version next to it, then v1 retired: its unit is stopped, disabled and removed.
        agent.apply(release(2, "v1", "v2"))
        converge_until(agent, 2)
        assert (unit_dir / units.unit_name("frontend/v2/0")).exists()
        agent.apply(release(3, "v2"))
        converge_until(agent, 3)
        assert not unit.exists() and set(agent.sup.instances) == {"frontend/v2/0"}
        calls = (fake_state / "calls.log").read_text()
        assert f"disable --now {unit.name}" in calls
        assert state.StateDir(str(tmp_path / "agent")).instances()["frontend/v2/0"]["unit"] == units.unit_name("frontend/v2/0")
    finally:
        agent.shutdown_instances()
        for pidfile in fake_state.glob("*.pid"):  # whatever a failed run left: by its own process group
            try:
                os.killpg(int(pidfile.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
