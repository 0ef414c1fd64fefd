"""A real OpenSSH sshd on a loopback port for tests: its own host key (pinned in a known_hosts file
beside it), one authorized_keys file, no passwords, started and stopped by the caller's Supervisor."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from federation.demo.procs import Supervisor, wait_for
from tests.integration.conftest import free_port

SSHD = "/usr/sbin/sshd"


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return Path(f"{path}.pub").read_text().strip()


def start_sshd(tmp: Path, procs: Supervisor, authorized_keys: str, *, root_login: str = "forced-commands-only",
               sftp: bool = False) -> int:
    """Start sshd with ``authorized_keys`` (the file's text); returns its port. The host key's line
    is written to ``tmp/known_hosts``."""
    if not Path(SSHD).exists():
        pytest.fail("openssh-server is installed by make install")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    host_pub = keygen(tmp / "host_key")
    port = free_port()
    (tmp / "authorized_keys").write_text(authorized_keys)
    cfg = tmp / "sshd_config"
    cfg.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {tmp / 'host_key'}", f"PidFile {tmp / 'sshd.pid'}",
        f"AuthorizedKeysFile {tmp / 'authorized_keys'}", f"PermitRootLogin {root_login}",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
        "AllowAgentForwarding no", "X11Forwarding no", *(["Subsystem sftp internal-sftp"] if sftp else []),
        "LogLevel ERROR", ""]))
    kind, key = host_pub.split()[:2]
    (tmp / "known_hosts").write_text(f"[127.0.0.1]:{port} {kind} {key}\n")
    procs.start("sshd", [SSHD, "-D", "-e", "-f", str(cfg)])

    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for(listening, 20, "sshd")
    return port
