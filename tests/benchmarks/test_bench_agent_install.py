"""Benchmark: ``fedctl agents install`` of the one-file agent on 50 VMs over real OpenSSH.

The 50 "VMs" are 50 loopback ports of a few sshd processes (one host key, pinned per port): sshd forks a process per connection either way, so the work is that of 50 hosts, but they
share one filesystem — one prefix and one authorized_keys, where the hub's key line is written
before (50 writers of one file would race, which 50 real VMs do not). Measured: a first install,
then --upgrade, with --parallel 10 (the default) and 50; each ends with the hub's handshake to
every host through the forced command."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from federation.demo.procs import Supervisor, wait_for
from federation.runtimes import install
from tests import fleets
from tests.integration.sshd import SSHD, keygen

N = 50


def start_multi_sshd(tmp: Path, procs: Supervisor, authorized: str, ports: list[int]) -> None:
    """sshd listens on at most 16 sockets (MAX_LISTEN_SOCKS): one sshd per 12 ports, one host key."""
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    host_pub = keygen(tmp / "host_key")
    (tmp / "authorized_keys").write_text(authorized)
    kind, key = host_pub.split()[:2]
    (tmp / "known_hosts").write_text("".join(f"[127.0.0.1]:{p} {kind} {key}\n" for p in ports))
    for i in range(0, len(ports), 12):
        cfg = tmp / f"sshd_config.{i}"
        cfg.write_text("\n".join([
            *[f"Port {p}" for p in ports[i:i + 12]], "ListenAddress 127.0.0.1", f"HostKey {tmp / 'host_key'}",
            f"PidFile {tmp / f'sshd.{i}.pid'}", f"AuthorizedKeysFile {tmp / 'authorized_keys'}",
            "PermitRootLogin prohibit-password", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "UsePAM no", "StrictModes no", "MaxStartups 200", "MaxSessions 50", "Subsystem sftp internal-sftp",
            "LogLevel ERROR", ""]))
        procs.start(f"sshd-{i}", [SSHD, "-D", "-e", "-f", str(cfg)])

    def listening() -> bool:
        for p in ports:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", p)) != 0:
                    return False
        return True

    wait_for(listening, 20, "sshd")


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.mark.timeout(900)
def test_agent_install_on_50_vms(tmp_path: Path):
    procs = Supervisor(tmp_path / "logs")
    ports = free_ports(N)
    admin_pub = keygen(tmp_path / "admin_key")
    hub_pub = keygen(tmp_path / "hub_key")
    opt, state = tmp_path / "opt", tmp_path / "state"
    line = f'command="{install.forced_command(str(opt), str(state), sys.executable)}",restrict {hub_pub}'
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(json.dumps(fleets.fleet_doc([fleets.vm_zone(
        "vms", hosts=[{"address": "127.0.0.1", "port": p, "user": "root"} for p in ports],
        knownHosts=str(tmp_path / "known_hosts"), identityFile=str(tmp_path / "hub_key"))])))
    base = [sys.executable, "-m", "federation.cli.main", "agents", "install", "--fleet", str(fleet_file), "--zone", "vms",
            "--admin-key", str(tmp_path / "admin_key"), "--prefix", str(opt), "--state-dir", str(state),
            "--authorized-keys", str(tmp_path / "authorized_keys"), "--python", sys.executable]
    results: dict[str, tuple[int, int]] = {}
    try:
        start_multi_sshd(tmp_path, procs, f"{admin_pub}\n{line}\n", ports)
        for label, extra in (("install --parallel 10", ["--parallel", "10"]),
                             ("install --upgrade --parallel 10", ["--upgrade", "--parallel", "10"]),
                             ("install --upgrade --parallel 50", ["--upgrade", "--parallel", "50"])):
            t0 = time.monotonic()
            r = subprocess.run([*base, *extra], capture_output=True, text=True, timeout=600)
            took = time.monotonic() - t0
            ok = r.stdout.count(" installed ") + r.stdout.count(" upgraded ")
            print(f"agents {label}: {ok}/{N} VMs in {took:.1f}s ({len(install.zipapp().data)} byte file), "
                  f"load average {os.getloadavg()[0]:.1f}")
            for row in r.stdout.splitlines():
                if " failed " in row:
                    print("  " + " ".join(row.replace("│", " ").split()))
            results[label] = (r.returncode, ok)
        # The default concurrency must reach every VM; wider fan-out is measured, not required.
        assert results["install --parallel 10"] == (0, N), results
        assert (tmp_path / "authorized_keys").read_text().count("fed-agent.pyz rpc") == 1
    finally:
        procs.stop_all()
