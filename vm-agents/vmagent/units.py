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
import shutil
import subprocess

from vmagent import state
from vmagent.protocol import InstanceRecord
from vmagent.supervisor import Instance, Supervisor

PREFIX = "fed-"
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def systemd_booted() -> bool:
    """sd_booted(): systemd is the init system of this host."""
    return os.path.isdir("/run/systemd/system")


def unit_name(key: str) -> str:
    return PREFIX + re.sub(r"[^A-Za-z0-9_.-]", "-", key.replace("/", "-")) + ".service"


def quote(value: str) -> str:
    """One word for a systemd unit setting, per systemd's quoting rules: double quotes, with
    backslash and double quote escaped, ``%`` doubled (specifiers). Control characters are refused:
    a newline would start a new line of the unit (the agent refuses them earlier too)."""
    if CONTROL.search(value):
        raise ValueError(f"{value[:40]!r}: control characters (newline, NUL...) cannot go into a unit")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%") + '"'


def _quote_env(name: str, value: str) -> str:
    # Environment=: "$" has no special meaning there (no variable expansion), "%" is a specifier.
    return quote(f"{name}={value}")


def _quote_exec(arg: str) -> str:
    # ExecStart=: "$" expands variables, so a literal one is "$$".
    return quote(arg).replace("$", "$$")


HARDENING = (
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectControlGroups=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
)


def render_unit(key: str, service: str, version: str, argv: list[str], env: dict[str, str], log_file: str,
                user: str | None = None, allow_root: bool = True) -> str:
    """The unit text: ExecStart with absolute argv, the environment, logs appended to ``log_file``,
    the app's user and systemd's sandboxing. Every value is quoted per systemd's rules."""
    if not argv or not os.path.isabs(argv[0]):
        raise ValueError(f"{key}: systemd needs an absolute path to run, got {argv[:1]}")
    if (user is None or user == "root") and not allow_root:
        raise ValueError(f"{key}: refusing to run an app as root: set fed-agent --app-user (or --allow-root-apps)")
    for what in (key, service, version, log_file, user or ""):
        if CONTROL.search(what) or any(c in what for c in "\\\"'%$"):
            raise ValueError(f"{what[:40]!r} cannot go into a unit name, description or path")
    exec_start = " ".join(_quote_exec(a) for a in argv)
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
        *HARDENING,
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
                 systemctl: str = "systemctl", user: str | None = None, allow_root: bool = True) -> None:
        super().__init__(log_dir, port_low, port_high, user=user, allow_root=allow_root)
        self.unit_dir = unit_dir
        self.systemctl = systemctl

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
        self.continue_ports()

    def launch(self, inst: Instance, env: dict[str, str], log_file: str) -> None:
        """Write, enable and start the instance's unit (sets its unit and main pid)."""
        if inst.command and not os.path.isabs(inst.command[0]):
            found = shutil.which(inst.command[0])
            if found is None:
                raise RuntimeError(f"{inst.key}: {inst.command[0]!r} is not on the agent's PATH "
                                   "(systemd needs an absolute path)")
            inst.command[0] = found
        inst.unit = unit_name(inst.key)
        text = render_unit(inst.key, inst.service, inst.version, inst.command, env, log_file, self.user,
                           self.allow_root)
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
