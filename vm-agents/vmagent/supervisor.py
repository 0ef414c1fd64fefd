"""App instances as supervised processes: start, health-check, restart on death, stop by process group.

Each instance runs in its own session (process group) so stopping it takes its children too; its
pid and port are recorded in the state dir, so an agent restarted after a crash adopts the
instances still running instead of starting duplicates. Standard library only.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from vmagent.protocol import InstanceRecord


@dataclass
class Instance:
    key: str  # service/version/index
    service: str
    version: str
    port: int
    pid: int
    command: list[str]
    health: str = "/healthz"
    healthy: bool = False
    failures: int = 0  # health checks failed in a row
    started_at: float = field(default_factory=time.time)
    restarts: int = 0
    unit: str = ""  # the systemd unit running it (systemd runner), else empty

    def record(self) -> InstanceRecord:
        r: InstanceRecord = {"service": self.service, "version": self.version, "port": self.port, "pid": self.pid,
                             "command": self.command, "health": self.health, "restarts": self.restarts}
        if self.unit:
            r["unit"] = self.unit
        return r


def alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass  # not our child (adopted after a restart): fall back to a signal probe
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); /proc tells the truth on Linux.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return os.path.exists(f"/proc/{pid}") or not os.path.isdir("/proc")


def cmdline(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [p.decode() for p in f.read().split(b"\0") if p]
    except OSError:
        return None


def free_port(low: int, high: int, taken: set[int], start: int | None = None) -> int:
    """The first port of ``low``-``high`` from ``start`` on (wrapping) that no instance holds and
    that binds now."""
    first = start if start is not None and low <= start <= high else low
    order: list[int] = list(range(first, high + 1)) + list(range(low, first))
    for port in order:
        if port in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {low}-{high}")


class Supervisor:
    def __init__(self, log_dir: str, port_low: int, port_high: int, user: str | None = None,
                 allow_root: bool = True) -> None:
        self.user = user  # run apps as this user (when the agent runs as root)
        self.allow_root = allow_root
        self.log_dir = log_dir
        self.port_low, self.port_high = port_low, port_high
        self.instances: dict[str, Instance] = {}
        # Ports go round the range, never straight back to the one an instance just left: the
        # zone's Envoy may still send that version's cluster there until it applies the next
        # clusters, and another service's instance would answer for it.
        self.next_port = port_low
        os.makedirs(log_dir, exist_ok=True)

    def adopt(self, records: dict[str, InstanceRecord]) -> None:
        """Take over instances recorded by an earlier agent run if they still run the same command."""
        for key, r in records.items():
            pid = int(r["pid"])
            command = [str(c) for c in r["command"]]
            running = cmdline(pid)
            # The kernel's argv starts with the interpreter for scripts: compare the arguments.
            if alive(pid) and running is not None and running[len(running) - len(command) + 1:] == command[1:]:
                self.instances[key] = Instance(key, str(r["service"]), str(r["version"]), int(r["port"]),
                                               pid, command, str(r.get("health", "/healthz")),
                                               restarts=int(r.get("restarts", 0)))
        self.continue_ports()

    def continue_ports(self) -> None:
        """After adopting instances: new ports go on after the highest one they hold."""
        if self.instances:
            self.next_port = max(i.port for i in self.instances.values()) + 1

    def records(self) -> dict[str, InstanceRecord]:
        return {k: i.record() for k, i in self.instances.items()}

    def alive(self, inst: Instance) -> bool:
        return alive(inst.pid)

    def prepare(self, key: str, service: str, version: str, command: list[str],
                env: dict[str, str]) -> tuple[int, list[str], dict[str, str], str]:
        """A free port, the argv with ``${PORT}`` filled in, the instance's environment, its log file."""
        port = free_port(self.port_low, self.port_high, {i.port for i in self.instances.values()}, self.next_port)
        self.next_port = port + 1 if port < self.port_high else self.port_low
        argv = [c.replace("${PORT}", str(port)) for c in command]
        inst_env = dict(env, PORT=str(port), FED_SERVICE=service, FED_VERSION=version)
        return port, argv, inst_env, os.path.join(self.log_dir, key.replace("/", "_") + ".log")

    def start(self, key: str, service: str, version: str, command: list[str], env: dict[str, str],
              health: str, restarts: int = 0) -> Instance:
        port, argv, inst_env, log_file = self.prepare(key, service, version, command, env)
        inst = Instance(key, service, version, port, 0, argv, health, restarts=restarts)
        self.launch(inst, inst_env, log_file)
        self.instances[key] = inst
        return inst

    def launch(self, inst: Instance, env: dict[str, str], log_file: str) -> None:
        """Run ``inst`` (sets its pid): here a process in its own session, logging to ``log_file``."""
        ids = self.credentials()
        log = open(log_file, "ab")  # noqa: SIM115
        try:
            proc = subprocess.Popen(inst.command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    env={**os.environ, **env}, start_new_session=True, close_fds=True,
                                    **ids)
        finally:
            log.close()
        inst.pid = proc.pid

    def credentials(self) -> dict[str, Any]:
        """Popen's user/group/extra_groups for an app: the configured user when the agent runs as
        root; running an app as root is refused unless allowed."""
        if os.geteuid() != 0:
            return {}
        if self.user and self.user != "root":
            try:
                pw = pwd.getpwnam(self.user)
            except KeyError:
                raise RuntimeError(f"app user {self.user!r} does not exist on this VM (fed-agent --app-user)") from None
            return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        if not self.allow_root:
            raise RuntimeError("refusing to run an app as root: set fed-agent --app-user (or --allow-root-apps)")
        return {}

    def stop(self, key: str, grace: float = 5.0) -> None:
        inst = self.instances.pop(key, None)
        if inst is not None:
            self.terminate(inst, grace)

    def terminate(self, inst: Instance, grace: float) -> None:
        stop_group(inst.pid, grace)

    def check_health(self, inst: Instance, timeout: float = 1.0) -> bool:
        """One health check. An instance becomes healthy at its first good answer, and stops being
        healthy after ``FAILURE_THRESHOLD`` bad ones in a row (Kubernetes' failureThreshold): one
        slow answer on a busy VM must not take the only instance of a version out of the route
        (the zone then answers 503). A dead process is seen at once by ``alive`` and restarted."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{inst.port}{inst.health}", timeout=timeout) as r:
                ok = 200 <= r.status < 300
        except OSError:
            ok = False
        inst.failures = 0 if ok else inst.failures + 1
        if ok:
            inst.healthy = True
        elif inst.failures >= FAILURE_THRESHOLD:
            inst.healthy = False
        return inst.healthy


FAILURE_THRESHOLD = 3


def stop_group(pid: int, grace: float = 5.0) -> None:
    """TERM the process group led by ``pid``, then KILL it after ``grace`` seconds."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
