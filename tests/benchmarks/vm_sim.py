"""Simulated VMs for the fan-out benchmark: N agent SSH endpoints (asyncssh) in one process.

Each endpoint is the agent's real SSH front (``vmagent.server._session``: protocol only, requests on
stdin or as the command) backed by an in-memory agent that applies at once. Real VMs fsync their
own disks in parallel; N state dirs on one disk would measure that disk, not the fan-out. It orders
desired states as the agent does (``vmagent.state.StateDir.accept``: by generation, else by step,
an older one refused) and answers status as the agent's converge loop does once a pass is done
(applied revision and step, the stored generation, each serving version's replicas all healthy),
so the hub's ``VmZone.observe`` counts it applied as it would a real VM.
Run: python vm_sim.py --count N --dir DIR [--ports-file F] (writes DIR/F when all listen; stops on
SIGTERM). The benchmark runs two of them (real VMs do their side of the handshakes in parallel).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import asyncssh

from vmagent import PROTOCOL_VERSION, __version__, server
from vmagent.converge import releases


class SimAgent:
    def __init__(self, name: str) -> None:
        self.name = name
        self.desired: dict[str, Any] | None = None

    def status(self) -> dict[str, Any]:
        d = self.desired or {}
        versions = {}
        for rel in releases(d):
            spec = rel["spec"]
            for version in spec.get("serving") or {}:
                replicas = int((spec.get("versions") or {}).get(version, {}).get("replicas", 1))
                versions[f"{spec['service']}/{version}"] = {"replicas": replicas, "healthy": replicas,
                                                            "ready_percent": 100.0}
        return {"protocol": PROTOCOL_VERSION, "agent_version": __version__, "zone": "sim", "runner": "sim",
                "revision": d.get("revision"), "step": d.get("step"), "generation": d.get("generation"),
                "applied_revision": d.get("revision"), "applied_step": d.get("step"), "health": "ok",
                "draining": False, "error": "", "versions": versions, "instances": []}

    def apply(self, desired: dict[str, Any]) -> dict[str, Any]:
        current = self.desired or {}
        new_gen, old_gen = desired.get("generation"), current.get("generation")
        if isinstance(new_gen, int) and isinstance(old_gen, int):
            if new_gen < old_gen:
                return {"accepted": False, "reason": f"generation {new_gen} is older than stored {old_gen}"}
        elif isinstance(current.get("step"), int) and desired["step"] < current["step"]:
            return {"accepted": False, "reason": f"step {desired['step']} is older than stored step {current['step']}"}
        self.desired = desired
        return {"accepted": True}

    def rollback(self) -> dict[str, Any]:
        return {"accepted": False, "reason": "simulated"}


async def main(count: int, root: Path, ports_file: str = "ports.json") -> None:
    root.mkdir(parents=True, exist_ok=True)
    host_key = root / "host_key"
    if not host_key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
    servers, ports = [], []
    for i in range(count):
        agent = SimAgent(f"vm{i}")
        srv = await asyncssh.create_server(
            asyncssh.SSHServer, "127.0.0.1", 0, server_host_keys=[str(host_key)],
            authorized_client_keys=str(root / "authorized_keys"),
            process_factory=lambda p, a=agent: server._session(p, a),  # type: ignore[arg-type]
            allow_pty=False, agent_forwarding=False, x11_forwarding=False, allow_scp=False, encoding="utf-8")
        servers.append(srv)
        ports.append(srv.sockets[0].getsockname()[1])
    tmp = root / f".{ports_file}.tmp"
    tmp.write_text(json.dumps(ports))
    tmp.rename(root / ports_file)  # appears complete: the benchmark polls for it
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for s in servers:
        s.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--ports-file", default="ports.json")
    a = p.parse_args()
    asyncio.run(main(a.count, a.dir, a.ports_file))
