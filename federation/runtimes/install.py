"""Installing the agent on a VM: the files to copy and the commands to run, over an admin login.

The agent package (``vmagent``, standard library only) goes to ``<prefix>/vmagent``; a systemd unit
runs ``fed-agent run`` where systemd runs; the hub's public key is added to the agent user's
authorized_keys with a forced command and ``restrict``, so it can run nothing but the protocol.
Callers: ``fedctl agents install``.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import vmagent
from federation.core.spec import Zone


def package_files(prefix: str) -> dict[str, bytes]:
    src = Path(vmagent.__file__).resolve().parent
    return {f"{prefix}/vmagent/{p.name}": p.read_bytes() for p in sorted(src.glob("*.py"))}


def forced_command(prefix: str, state_dir: str, python: str = "/usr/bin/python3") -> str:
    return f"PYTHONPATH={shlex.quote(prefix)} {python} -m vmagent.cli rpc --state-dir {shlex.quote(state_dir)}"


def unit(zone: Zone, prefix: str, state_dir: str, user: str, python: str = "/usr/bin/python3") -> str:
    return f"""[Unit]
Description=federation VM agent (zone {zone.name})
After=network-online.target
Wants=network-online.target

[Service]
User={user}
Environment=PYTHONPATH={prefix}
ExecStart={python} -m vmagent.cli run --zone {zone.name} --state-dir {state_dir}
Restart=always
RestartSec=2
NoNewPrivileges=true

[Install]
WantedBy=multi-user.target
"""


def commands(zone: Zone, hub_public_key: str, prefix: str, state_dir: str, user: str, authorized_keys: str,
             python: str = "/usr/bin/python3") -> list[str]:
    """Shell commands for the admin login (idempotent: a second install changes nothing)."""
    line = f'command="{forced_command(prefix, state_dir, python)}",restrict {hub_public_key.strip()}'
    q = shlex.quote
    return [
        f"{q(python)} -c 'import sys; assert sys.version_info >= (3, 9), sys.version'",
        f"mkdir -p {q(state_dir)} && chmod 700 {q(state_dir)}",
        f"mkdir -p $(dirname {q(authorized_keys)}) && touch {q(authorized_keys)} && "
        f"(grep -qxF {q(line)} {q(authorized_keys)} || echo {q(line)} >> {q(authorized_keys)})",
        "if [ -d /run/systemd/system ]; then systemctl daemon-reload && systemctl enable --now fed-agent.service; "
        "else echo 'no systemd here: start `fed-agent run` under your supervisor'; fi",
        f"PYTHONPATH={q(prefix)} {q(python)} -m vmagent.cli version",
    ]
