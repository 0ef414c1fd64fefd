#!/usr/bin/env python3
"""A stand-in for ``systemctl`` where systemd is not the init system (this machine): the few verbs
the agent's systemd runner uses, on the unit files it wrote. It parses ExecStart and Environment
with systemd's quoting and runs the service as its own process group; state lives in
$FAKE_SYSTEMD_STATE. Test scaffolding only: real systemd validates the same unit files through
``systemd-analyze verify`` in the tests."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time

UNIT_DIR = os.environ["FAKE_SYSTEMD_UNIT_DIR"]
STATE = os.environ["FAKE_SYSTEMD_STATE"]


def unescape(text: str) -> str:
    return text.replace("$$", "$").replace("%%", "%")


def parse(unit: str) -> tuple[list[str], dict[str, str], str | None]:
    argv: list[str] = []
    env: dict[str, str] = {}
    log = None
    with open(os.path.join(UNIT_DIR, unit), encoding="utf-8") as f:
        for line in f:
            key, _, value = line.strip().partition("=")
            if key == "ExecStart":
                argv = [unescape(a) for a in shlex.split(value)]
            elif key == "Environment":
                for item in shlex.split(value):
                    k, _, v = item.partition("=")
                    env[k] = unescape(v)
            elif key == "StandardOutput" and value.startswith("append:"):
                log = value[len("append:"):]
    return argv, env, log


def pid_of(unit: str) -> int:
    try:
        with open(os.path.join(STATE, unit + ".pid")) as f:
            pid = int(f.read())
    except (FileNotFoundError, ValueError):
        return 0
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as f:
            if f.read().split(") ", 1)[1][0] == "Z":
                return 0
    except (ProcessLookupError, FileNotFoundError):
        return 0
    return pid


def main(args: list[str]) -> int:
    os.makedirs(STATE, exist_ok=True)
    with open(os.path.join(STATE, "calls.log"), "a") as f:
        f.write(" ".join(args) + "\n")
    verb, rest = args[0], args[1:]
    units = [a for a in rest if a.endswith(".service")]
    if verb == "daemon-reload":
        return 0
    if verb == "enable" and "--now" in rest:
        for u in units:
            if pid_of(u):
                continue
            argv, env, log = parse(u)
            out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
            p = subprocess.Popen(argv, env=dict(os.environ, **env), stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
            with open(os.path.join(STATE, u + ".pid"), "w") as f:
                f.write(str(p.pid))
            open(os.path.join(STATE, u + ".enabled"), "w").close()
        return 0
    if verb == "disable" and "--now" in rest:
        for u in units:
            pid = pid_of(u)
            if pid:
                os.killpg(pid, signal.SIGTERM)
                deadline = time.monotonic() + 10
                while pid_of(u) and time.monotonic() < deadline:
                    time.sleep(0.05)
            for suffix in (".pid", ".enabled"):
                try:
                    os.unlink(os.path.join(STATE, u + suffix))
                except FileNotFoundError:
                    pass
        return 0
    if verb == "is-active":
        return 0 if units and all(pid_of(u) for u in units) else 3
    if verb == "show" and "MainPID" in rest:
        print(pid_of(units[0]) if units else 0)
        return 0
    print(f"fake systemctl: unsupported: {' '.join(args)}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
