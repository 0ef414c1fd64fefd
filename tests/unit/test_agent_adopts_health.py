"""An agent restarted (SIGKILLed, upgraded) adopts its running instances as healthy as the last run
reported them: before, an adopted instance started unhealthy, so one slow first health check on a
busy VM took the only instance of a version out of the zone's route (503 until the next check),
the hysteresis of three failed checks notwithstanding."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from vmagent.converge import Agent, Config


def test_a_restarted_agent_keeps_the_health_its_last_run_reported(tmp_path: Path):
    procs = [subprocess.Popen(["sleep", "60"]) for _ in range(3)]
    try:
        deadline = time.monotonic() + 10  # until each child has exec'd sleep (the agent adopts by cmdline)
        while not all(Path(f"/proc/{p.pid}/cmdline").read_bytes().startswith(b"sleep\0") for p in procs):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        state = tmp_path / "state"
        state.mkdir()
        keys = ["s/v1/0", "s/v2/0", "s/v3/0"]
        records = {k: {"service": "s", "version": k.split("/")[1], "port": 1, "pid": p.pid, "command": ["sleep", "60"],
                       "health": "/healthz", "restarts": 0} for k, p in zip(keys, procs, strict=True)}
        (state / "instances.json").write_text(json.dumps(records))
        reported = [dict(records["s/v1/0"], key="s/v1/0", healthy=True),  # healthy: adopted healthy
                    dict(records["s/v2/0"], key="s/v2/0", healthy=False),  # not yet healthy: stays so
                    dict(records["s/v3/0"], key="s/v3/0", healthy=True, pid=procs[2].pid + 100000)]  # another pid
        (state / "status.json").write_text(json.dumps({"instances": reported}))
        agent = Agent(Config(str(state), "vms", None, None))
        assert set(agent.sup.instances) == set(keys)
        assert {k: i.healthy for k, i in agent.sup.instances.items()} == {"s/v1/0": True, "s/v2/0": False,
                                                                           "s/v3/0": False}
        # Port 1 answers nothing: one failed check keeps the adopted healthy instance routed.
        assert agent.sup.check_health(agent.sup.instances["s/v1/0"], timeout=0.2)
    finally:
        for p in procs:
            p.kill()
            p.wait()
