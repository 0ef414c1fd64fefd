"""`fedctl agents drain` on the demo fleet's VM zone, over SSH to the real agent and its Envoy: the
VM's health check turns 503 (load balancers stop sending), requests still arriving are served, the
answer waits for a request in flight to finish, the stored flag wins over an Envoy that lost it
(restarted), and --undo puts the VM back. The OpenSSH path (`fed-agent rpc`) stores the flag for the running agent."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from federation import specfiles
from federation.core import spec as specs
from federation.core.state import Phase
from federation.demo import run as demo_run
from federation.demo.fleet import READY_PATH, LocalFleet
from federation.demo.procs import wait_for
from federation.hub import parts as hub_parts
from federation.hub.store import FileStore
from federation.hub.worker import RolloutWorker

pytestmark = pytest.mark.e2e
FEDCTL = [sys.executable, "-m", "federation.cli.main"]


def fedctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FEDCTL, *args], capture_output=True, text=True, timeout=120)


def test_drain_a_vm_and_bring_it_back(tmp_path: Path):
    fleet = LocalFleet(tmp_path / "fleet")
    fleet.prepare()
    f = specfiles.load_one(fleet.fleet_file, specs.Fleet)
    vms = next(z for z in fleet.zones if z.name == "vms")
    ingress = f"http://127.0.0.1:{vms.ingress_port}"
    try:
        fleet.start()
        demo_run.release(fleet, demo_run.canary_doc(demo_run.Pace.fast(), ("v1", ["vms"]), ("v2", ["eks"])), "release")

        async def initialise() -> None:  # the hub's first step puts v1 on the VMs
            ad = hub_parts.build(f, tmp_path / "hub")
            try:
                await ad.sync()
                canary = (await ad.canaries())["shop/frontend"][1]
                assert canary is not None
                worker = RolloutWorker("shop/frontend", ad, FileStore(tmp_path / "state"))
                for _ in range(200):
                    if (await worker.tick(canary)).decision.status.phase is not Phase.INITIALIZING:
                        return
                    await asyncio.sleep(0.2)
                pytest.fail("v1 never came up on the VMs")
            finally:
                await ad.close()

        asyncio.run(initialise())
        assert httpx.get(f"{ingress}{READY_PATH}", timeout=5).status_code == 200
        # A slow request is in flight when the drain starts: the answer waits for it.
        slow: dict = {}
        t = threading.Thread(target=lambda: slow.update(r=httpx.get(f"{ingress}/?hold_ms=2500", timeout=15)))
        t.start()
        time.sleep(0.3)  # let the slow request reach the app (not a synchronisation the assertions rely on)
        t0 = time.monotonic()
        r = fedctl("agents", "drain", "--fleet", str(fleet.fleet_file), "--zone", "vms", "-o", "json")
        waited = time.monotonic() - t0
        assert r.returncode == 0, r.stderr
        (row,) = json.loads(r.stdout)
        assert row["draining"] and row["drained"] and row["active_requests"] == 0 and row["envoy_state"] == "DRAINING"
        t.join()
        assert slow["r"].status_code == 200  # the request in flight finished normally
        assert waited > 1.0, waited  # the answer came after it, not at once
        assert httpx.get(f"{ingress}{READY_PATH}", timeout=5).status_code == 503
        assert httpx.get(f"{ingress}/", timeout=5).status_code == 200  # late requests are still served
        # Envoy forgets (as after its restart): the agent's loop drains it again from the stored flag.
        httpx.post(f"http://127.0.0.1:{vms.admin_port}/healthcheck/ok", timeout=5)
        wait_for(lambda: httpx.get(f"{ingress}{READY_PATH}", timeout=5).status_code == 503, 20, "drained again")
        st = fedctl("agents", "status", "--fleet", str(fleet.fleet_file), "--zone", "vms", "-o", "json")
        assert json.loads(st.stdout)[0]["health"] == "draining"
        # Back in rotation.
        r = fedctl("agents", "drain", "--fleet", str(fleet.fleet_file), "--zone", "vms", "--undo", "-o", "json")
        assert r.returncode == 0, r.stderr
        assert not json.loads(r.stdout)[0]["draining"]
        assert httpx.get(f"{ingress}{READY_PATH}", timeout=5).status_code == 200
        # Unknown host: a clear error, non-zero.
        bad = fedctl("agents", "drain", "--fleet", str(fleet.fleet_file), "--zone", "vms", "--host", "10.9.9.9")
        assert bad.returncode != 0 and "no host among 10.9.9.9" in bad.stderr and "Traceback" not in bad.stderr
    finally:
        fleet.stop()


def test_rpc_drain_stores_the_flag_for_the_running_agent(tmp_path: Path):
    from vmagent import rpc, state

    backend = rpc.StateDirBackend(str(tmp_path))
    answer = backend.drain(True, 0.3)  # no agent runs here: the flag is stored, the answer says so
    assert state.read_drain(state.StateDir(str(tmp_path)))
    assert answer["draining"] and not answer["drained"] and "not picked the change up" in answer["pending"]
    # The running agent reports it: the same call then confirms.
    state.StateDir(str(tmp_path)).set_report({"draining": True, "active_requests": 0, "envoy_state": "DRAINING"})
    assert backend.drain(True, 1.0)["drained"]
