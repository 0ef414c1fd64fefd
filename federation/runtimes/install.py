"""Installing the agent on a VM: one file, its checksum, its unit, and the commands to run over an
admin login.

The agent (``vmagent``, standard library only) ships as a single zipapp, ``<prefix>/fed-agent.pyz``,
built here from the installed package, byte for byte the same for the same agent (sorted entries,
fixed timestamps), so its SHA-256 names it. It is uploaded beside its final path, verified on the
VM against that checksum with the VM's own Python, then renamed over the old one: a forced command
starting at any moment runs either the old file or the new one, whole. A systemd unit runs
``fed-agent run``; ``KillMode=process`` makes a restart (an upgrade) stop only the agent, never the
app instances it started, which the new agent adopts. The hub's public key is added to the agent
user's authorized_keys with a forced command and ``restrict``, so it can run nothing but the
protocol. Callers: ``fedctl agents install`` and ``fedctl agents package``.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import shlex
import zipfile
from dataclasses import dataclass
from pathlib import Path

import vmagent

AGENT_FILE = "fed-agent.pyz"
UNIT_FILE = "fed-agent.service"
_MAIN = b'"""fed-agent as one file (a zipapp built by fedctl; see vm-agents/README.md)."""\n' \
        b"import sys\n\nfrom vmagent.cli import main\n\nsys.exit(main())\n"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # zip's earliest date: the same sources give the same bytes


@dataclass(frozen=True)
class Agent:
    """The zipapp's bytes and their SHA-256 (hex)."""

    data: bytes
    sha256: str

    @classmethod
    def of(cls, data: bytes) -> Agent:
        return cls(data, hashlib.sha256(data).hexdigest())


def zipapp() -> Agent:
    """The installed ``vmagent`` package as one executable file (Python 3.9+, standard library)."""
    src = Path(vmagent.__file__).resolve().parent
    buf = io.BytesIO()
    buf.write(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        entries = [("__main__.py", _MAIN)] + [(f"vmagent/{p.name}", p.read_bytes()) for p in sorted(src.glob("*.py"))]
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return Agent.of(buf.getvalue())


def forced_command(prefix: str, state_dir: str, python: str = "/usr/bin/python3") -> str:
    return f"{python} {shlex.quote(f'{prefix}/{AGENT_FILE}')} rpc --state-dir {shlex.quote(state_dir)}"


def unit(zone: str, prefix: str, state_dir: str, user: str, python: str = "/usr/bin/python3") -> str:
    """The agent's systemd unit; ``zone`` may be a specifier such as ``%H`` (the host name)."""
    return f"""[Unit]
Description=federation VM agent (zone {zone})
After=network-online.target
Wants=network-online.target

[Service]
User={user}
ExecStart={python} {prefix}/{AGENT_FILE} run --zone {zone} --state-dir {state_dir}
Restart=always
RestartSec=2
# A restart (an upgrade) stops the agent only: app instances it runs as processes keep serving and
# the new agent adopts them from its state dir (instances run as systemd units are apart anyway).
KillMode=process
NoNewPrivileges=true

[Install]
WantedBy=multi-user.target
"""


def upload_path(prefix: str) -> str:
    """Where the new file lands before it is verified: beside the final path (same filesystem, so
    the rename is atomic), a name of its own per install."""
    return f"{prefix}/.{AGENT_FILE}.{secrets.token_hex(6)}.new"


def commands(hub_public_key: str, prefix: str, state_dir: str, authorized_keys: str,
             agent: Agent, uploaded: str, python: str = "/usr/bin/python3", upgrade: bool = False) -> list[str]:
    """Shell commands for the admin login, in order; each must exit 0 (idempotent: a second
    install changes nothing but the file's timestamp)."""
    line = f'command="{forced_command(prefix, state_dir, python)}",restrict {hub_public_key.strip()}'
    key_body = hub_public_key.split()[1] if len(hub_public_key.split()) > 1 else hub_public_key.strip()
    q = shlex.quote
    final = f"{prefix}/{AGENT_FILE}"
    verify = ("import hashlib, sys; d = hashlib.sha256(open(sys.argv[1], 'rb').read()).hexdigest(); "
              "sys.exit(0 if d == sys.argv[2] else 'checksum mismatch: ' + sys.argv[1] + ' has sha256 ' + d + "
              "', expected ' + sys.argv[2])")
    unit_path = f"{prefix}/{UNIT_FILE}"
    start = (f"systemctl daemon-reload && systemctl enable {q(unit_path)} && systemctl restart {UNIT_FILE}"
             if upgrade else f"systemctl enable --now {q(unit_path)}")
    return [
        f"{q(python)} -c 'import sys; assert sys.version_info >= (3, 9), sys.version'",
        f"{q(python)} -c {q(verify)} {q(uploaded)} {agent.sha256} || {{ rm -f {q(uploaded)}; exit 1; }}",
        f"chmod 0755 {q(uploaded)} && mv -f {q(uploaded)} {q(final)}",
        f"{q(python)} {q(final)} version",
        f"mkdir -p {q(state_dir)} && chmod 700 {q(state_dir)}",
        # The hub's key: exactly one line, with the current forced command (an older line for the
        # same key, e.g. of a tree install, is replaced: sshd would use the first one it finds).
        f"mkdir -p $(dirname {q(authorized_keys)}) && touch {q(authorized_keys)} && "
        f"if ! grep -qxF {q(line)} {q(authorized_keys)}; then "
        f"{{ grep -vF {q(key_body)} {q(authorized_keys)} || true; echo {q(line)}; }} > {q(authorized_keys + '.fed-new')} && "
        f"cat {q(authorized_keys + '.fed-new')} > {q(authorized_keys)} && rm -f {q(authorized_keys + '.fed-new')}; fi",
        f"rm -rf {q(prefix + '/vmagent')}",  # a tree install's package, replaced by the file
        f"if [ -d /run/systemd/system ]; then {start}; "
        f"else echo 'no systemd here: (re)start `{python} {final} run` under your supervisor'; fi",
    ]
