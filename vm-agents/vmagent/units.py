"""App instances as systemd units, where systemd runs (``--runner systemd``, or ``auto`` on a host
booted with systemd): one ``fed-<service>-<version>-<n>.service`` per instance, written atomically
to the unit directory, enabled and started with ``systemctl``. systemd then keeps it running while
the agent is away and starts it at boot; the agent still health-checks it, restarts it when it is
no longer active, and stops, disables and removes the units of retired versions.
Standard library only.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess

from vmagent import state
from vmagent.protocol import InstanceRecord
from vmagent.supervisor import Instance, Supervisor

PREFIX = "fed-"


def systemd_booted() -> bool:
    """sd_booted(): systemd is the init system of this host."""
    return os.path.isdir("/run/systemd/system")


def unit_name(key: str) -> str:
    return PREFIX + re.sub(r"[^A-Za-z0-9_.-]", "-", key.replace("/", "-")) + ".service"


def _quote_env(name: str, value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{name}={escaped}"'


def render_unit(key: str, service: str, version: str, argv: list[str], env: dict[str, str], log_file: str,
                user: str | None = None) -> str:
    """The unit text: ExecStart with absolute argv, the environment, logs appended to ``log_file``."""
    if not argv or not os.path.isabs(argv[0]):
        raise ValueError(f"{key}: systemd needs an absolute path to run, got {argv[:1]}")
    exec_start = " ".join(shlex.quote(a).replace("%", "%%").replace("$", "$$") for a in argv)
    lines = [
        "# Written by fed-agent; removed when this version is retired. Do not edit.",
        "[Unit]",
        f"Description=federation {service} {version} ({key})",
        "After=network-online.target",
        "",
        "[Service]",
        f"ExecStart={exec_start}",
        *(f"Environment={_quote_env(k, v)}" for k, v in sorted(env.items())),
        f"StandardOutput=append:{log_file}",
        f"StandardError=append:{log_file}",
        "Restart=on-failure",
        "RestartSec=1",
        "KillMode=control-group",
        "TimeoutStopSec=10",
        "NoNewPrivileges=yes",
        *([f"User={user}"] if user else []),
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


class SystemdSupervisor(Supervisor):
    """The ``Supervisor`` contract over systemd units."""

    def __init__(self, log_dir: str, port_low: int, port_high: int, unit_dir: str = "/etc/systemd/system",
                 systemctl: str = "systemctl", user: str | None = None) -> None:
        super().__init__(log_dir, port_low, port_high)
        self.unit_dir = unit_dir
        self.systemctl = systemctl
        self.user = user

    def _ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([self.systemctl, *args], capture_output=True, text=True, timeout=60)
        if check and out.returncode != 0:
            raise RuntimeError(f"systemctl {' '.join(args)} failed: {out.stderr.strip() or out.returncode}")
        return out

    def _main_pid(self, unit: str) -> int:
        out = self._ctl("show", "-p", "MainPID", "--value", unit, check=False).stdout.strip()
        return int(out) if out.isdigit() else 0

    def active(self, unit: str) -> bool:
        return self._ctl("is-active", "--quiet", unit, check=False).returncode == 0

    def alive(self, inst: Instance) -> bool:
        return self.active(inst.unit) if inst.unit else super().alive(inst)

    def adopt(self, records: dict[str, InstanceRecord]) -> None:
        for key, r in records.items():
            unit = str(r.get("unit") or "")
            if unit and self.active(unit):
                self.instances[key] = Instance(key, str(r["service"]), str(r["version"]), int(r["port"]),
                                               self._main_pid(unit), [str(c) for c in r["command"]],
                                               str(r.get("health", "/healthz")), restarts=int(r.get("restarts", 0)),
                                               unit=unit)

    def launch(self, inst: Instance, env: dict[str, str], log_file: str) -> None:
        """Write, enable and start the instance's unit (sets its unit and main pid)."""
        if inst.command and not os.path.isabs(inst.command[0]):
            found = shutil.which(inst.command[0])
            if found is None:
                raise RuntimeError(f"{inst.key}: {inst.command[0]!r} is not on the agent's PATH "
                                   "(systemd needs an absolute path)")
            inst.command[0] = found
        inst.unit = unit_name(inst.key)
        text = render_unit(inst.key, inst.service, inst.version, inst.command, env, log_file, self.user)
        state.write_atomic(os.path.join(self.unit_dir, inst.unit), text.encode(), mode=0o644)
        self._ctl("daemon-reload")
        self._ctl("enable", "--now", inst.unit)
        inst.pid = self._main_pid(inst.unit)

    def terminate(self, inst: Instance, grace: float) -> None:
        self._ctl("disable", "--now", inst.unit, check=False)
        try:
            os.unlink(os.path.join(self.unit_dir, inst.unit))
        except FileNotFoundError:
            pass
        self._ctl("daemon-reload", check=False)
