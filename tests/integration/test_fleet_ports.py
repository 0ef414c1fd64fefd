"""The local fleet comes up when the ports it chose are taken before its processes bind them: the
race the e2e demo once lost ("address already in use" from the eks agent). Each port the fleet
picked for the vms zone and the edge is occupied by another listener before ``start``; every part
must start on other ports, and ``fleet.yaml``/``known_hosts`` must name the ports in use (the hub
reaches the agent over SSH through them)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from federation.demo.fleet import LocalFleet


def occupy(port: int) -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


def test_fleet_starts_on_fresh_ports_when_its_ports_are_taken(tmp_path: Path):
    fleet = LocalFleet(tmp_path / "fleet")
    fleet.prepare()
    vms = next(z for z in fleet.zones if z.name == "vms")
    taken = {"ssh": vms.ssh_port, "ingress": vms.ingress_port, "prometheus": vms.prom_port,
             "edge": fleet.edge_port}
    holders = [occupy(p) for p in taken.values()]
    try:
        fleet.start(only=("vms",))
        now = {"ssh": vms.ssh_port, "ingress": vms.ingress_port, "prometheus": vms.prom_port,
               "edge": fleet.edge_port}
        assert all(now[k] != taken[k] for k in taken), (taken, now)
        assert (fleet.zdir("vms") / "agent.ready").read_text().strip() == str(vms.ssh_port)
        # The edge reaches vms's ingress on its new port (the ingress answers 503 itself: nothing
        # is served yet; an unreachable cluster would be Envoy's "upstream connect error").
        r = httpx.get(fleet.edge_url, timeout=5.0)
        assert r.status_code == 503 and "upstream connect error" not in r.text, r.text
        assert httpx.get(f"{fleet.prometheus_url('vms')}/-/ready", timeout=5.0).status_code == 200
        # The hub reaches the agent over SSH with the fleet file and known_hosts as written now.
        st = subprocess.run([sys.executable, "-m", "federation.cli.main", "agents", "status", "--fleet",
                             str(fleet.fleet_file), "--zone", "vms", "-o", "json"],
                            capture_output=True, text=True, timeout=60)
        assert st.returncode == 0, st.stdout + st.stderr
        rows = json.loads(st.stdout)
        assert rows and all(r["reachable"] is True for r in rows), rows
    finally:
        fleet.stop()
        for s in holders:
            s.close()
