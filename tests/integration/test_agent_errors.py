"""An agent that cannot start an app (its binary is missing) says so in one line, once, backs off,
reports the error in its status (the hub's reason for the zone), and recovers when fixed."""

from __future__ import annotations

import asyncio
import re

from federation.runtimes.ssh import Pool
from federation.runtimes.vm import VmAgents
from tests.integration.test_vm_agents_ssh import BIN, fleet, zone  # noqa: F401 (the fixture)


def manifests(command: str) -> list[dict]:
    return [{"apiVersion": "federation.io/v1alpha1", "kind": "ZoneRelease", "metadata": {"name": "frontend"},
             "spec": {"service": "frontend", "versions": {"v1": {"command": [command, "--port", "${PORT}"],
                                                                  "replicas": 1}},
                      "serving": {"v1": 10_000}}}]


def test_missing_binary_is_one_line_with_backoff(fleet):  # noqa: F811
    tmp, hosts, key = fleet
    log = tmp / "logs" / "agent-vm0.log"

    async def scenario() -> None:
        pool = Pool(call_timeout=5)
        z = VmAgents(zone(tmp, hosts[:1], key), pool)
        try:
            for step in (1, 2, 3):  # each apply wakes a converge pass that fails the same way
                await z.apply(f"rev{step}", step, manifests(str(tmp / "missing" / "fed-demo-app")))
            deadline = asyncio.get_running_loop().time() + 60
            while "No such file" not in ((await z.observe()).hosts[0].error or ""):
                assert asyncio.get_running_loop().time() < deadline, "the agent never reported the error"
                await asyncio.sleep(0.2)
            await z.apply("rev4", 4, manifests(str(BIN / "fed-demo-app")))
            while "converge pass succeeded again" not in log.read_text():
                assert asyncio.get_running_loop().time() < deadline + 60, log.read_text()[-2000:]
                await asyncio.sleep(0.2)
        finally:
            await pool.close()

    asyncio.run(scenario())
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    failures = [ln for ln in text.splitlines() if "converge pass failed" in ln]
    assert len(failures) == 1 and "FileNotFoundError" in failures[0], failures
    n = int(re.search(r"succeeded again \(after (\d+) failed\)", text).group(1))
    assert n >= 2  # several failed passes, one line


