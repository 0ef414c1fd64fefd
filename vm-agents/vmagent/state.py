"""The agent's state directory: desired state (with its Git revision) and instance records, on disk.

Every write is atomic (temp file, fsync, rename, fsync of the directory) so a crash or reboot leaves
either the old or the new state, never half of one. Standard library only (Python 3.9+).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from typing import Any

from vmagent import manifests
from vmagent.protocol import ApplyAnswer, Desired


def write_atomic(path: str, data: bytes, mode: int = 0o600) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def write_json(path: str, value: Any) -> None:
    write_atomic(path, (json.dumps(value, indent=1, sort_keys=True) + "\n").encode())


def read_json(path: str) -> Any | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


class StateDir:
    """Files: desired.json (current), previous.json (for rollback), instances.json (pids, ports)."""

    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, mode=0o700, exist_ok=True)

    def path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def desired(self) -> dict[str, Any] | None:
        return read_json(self.path("desired.json"))

    def set_desired(self, desired: dict[str, Any]) -> None:
        current = self.desired()
        if current is not None and current.get("revision") != desired.get("revision"):
            write_json(self.path("previous.json"), current)
        write_json(self.path("desired.json"), desired)

    def previous(self) -> dict[str, Any] | None:
        return read_json(self.path("previous.json"))

    def instances(self) -> dict[str, Any]:
        return read_json(self.path("instances.json")) or {}

    def set_instances(self, records: dict[str, Any]) -> None:
        write_json(self.path("instances.json"), records)

    def report(self) -> dict[str, Any] | None:
        return read_json(self.path("status.json"))

    def set_report(self, report: Mapping[str, Any]) -> None:
        write_json(self.path("status.json"), report)

    def accept(self, desired: Desired) -> ApplyAnswer:
        """Store a desired state sent by the hub, refusing one older than what is stored.

        It must carry a revision and a step (without a step the older-state guard could be
        cleared). Applies are serialised under a lock on the state directory: the running agent
        and ``fed-agent rpc`` processes never interleave a read and a write (two concurrent
        applies could otherwise store the older step)."""
        manifests.check_desired(desired)
        with self.lock():
            current = self.desired() or {}
            new_step, old_step = desired["step"], current.get("step")
            new_gen, old_gen = desired.get("generation"), current.get("generation")
            # A late retry of an older state must never move this VM backwards. Generations order
            # the states of every rollout in the zone; a hub that sends none is ordered by step.
            if isinstance(new_gen, int) and isinstance(old_gen, int):
                if new_gen < old_gen:
                    return {"accepted": False, "reason": f"generation {new_gen} is older than stored {old_gen}"}
            elif isinstance(old_step, int) and new_step < old_step:
                return {"accepted": False, "reason": f"step {new_step} is older than stored step {old_step}"}
            self.set_desired({"revision": desired["revision"], "step": new_step,
                              **({"generation": new_gen} if isinstance(new_gen, int) else {}),
                              "manifests": desired["manifests"], "received_at": time.time()})
        return {"accepted": True}

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        fd = os.open(self.path("apply.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def restore_previous(self) -> ApplyAnswer:
        with self.lock():
            prev = self.previous()
            if prev is None:
                return {"accepted": False, "reason": "no previous desired state stored"}
            self.set_desired(prev)
        return {"accepted": True, "revision": prev.get("revision")}


def read_drain(sd: StateDir) -> bool:
    return bool((read_json(sd.path("drain.json")) or {}).get("draining"))


def write_drain(sd: StateDir, draining: bool) -> None:
    write_json(sd.path("drain.json"), {"draining": draining, "at": time.time()})
