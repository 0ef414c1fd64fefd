"""docs/operating.md runs as written: its ``sh`` blocks, in order, in one shell, against the demo
fleet and a hub of its own. A command that fails (and is not marked as expected to be refused)
fails the test; the processes it started are stopped by their process groups, also on failure."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from federation.demo.procs import wait_for
from tests.integration.conftest import free_port

pytestmark = pytest.mark.e2e
DOC = Path(__file__).resolve().parents[2] / "docs" / "operating.md"


def blocks() -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)


def test_every_command_of_the_operating_guide_runs(tmp_path: Path):
    parts = blocks()
    assert len(parts) >= 8
    script = "set -euo pipefail\n" + "".join(f"echo '### block {i}' >&2\n{b}" for i, b in enumerate(parts))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDERATION_")}
    env.update({"PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}", "HUB_PORT": str(free_port()),
                "HOME": str(tmp_path)})
    p = subprocess.Popen(["bash", "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=900)
        assert p.returncode == 0, out[-6000:] + "\nhub log:\n" + _tail(tmp_path / "hub.log")
        # What the guide promises, checked from what its commands printed and wrote.
        assert "pause accepted: paused at step" in out
        assert "refused (exit 1): already paused" in out
        assert "promote accepted" in out
        assert "undo accepted: new rollout v2@eks+onprem -> v1@vms" in out
        assert "refused (exit 1): a rollout is in progress" in out
        assert "abort accepted: rolled back" in out
        assert "refused (exit 1): nothing runs" in out
        history = json.loads((tmp_path / "history.json").read_text())
        assert {"initialise", "promotion", "finalising"} <= {r["stage"] for r in history}
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGTERM)  # the script and the hub it started in the background
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)
        groups: list[int] = []
        with contextlib.suppress(OSError, ValueError):
            groups = list(json.loads((tmp_path / "fleet" / "processes.json").read_text()).values())
        for pgid in groups:  # agents first: they stop their app instances
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: not any(_alive(g) for g in groups), 30, "the fleet stopped")
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _tail(path: Path) -> str:
    try:
        return path.read_text()[-4000:]
    except OSError:
        return ""
