"""Pending operator commands, beside the rollout statuses (``hub.store``): ``Commands`` (one file
per rollout in the hub's state directory) or ``ConfigMapCommands`` (one ConfigMap per rollout on the
hub's cluster: whichever replica receives the API call writes it, the one running the rollout
consumes it). Each keeps the answer to the last command consumed for the API caller waiting on it.
Callers: ``hub.desk`` (through the hub's service), ``fedctl hub run``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from federation import files
from federation.core.state import COMMANDS, Command
from federation.hub.store import KEY_ANNOTATION, MANAGED_BY, configmap_name, file_name, key_of
from federation.runtimes import kubernetes as kube


def check_command(command: str) -> None:
    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r}; known: {', '.join(COMMANDS)}")


class Commands:
    """Pending operator commands, one file per rollout, removed once a tick consumed them; the
    answer to the last one consumed beside it, for the API caller waiting on it (off the loop)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Clearing a consumed command reads the pending file, then removes it when it is still that
        # command: a newer command written between the two would be lost. Both run in worker
        # threads, so the check and the removal hold this lock, and so does every write.
        self._lock = threading.Lock()
        # Keys with a pending file, listed once, then kept by ``_put`` and ``_done`` (one hub per
        # state directory writes here): a tick of a rollout with no command reads no file.
        self._pending: set[str] | None = None

    def _path(self, key: str, suffix: str = ".json") -> Path:
        return self.root / (file_name(key) + suffix)

    def _put(self, key: str, doc: dict[str, Any]) -> None:
        with self._lock:
            files.replace(self._path(key), json.dumps(doc).encode(), mode=0o600)
            if self._pending is not None:
                self._pending.add(key)

    def _listed(self) -> set[str]:
        with self._lock:
            if self._pending is None:
                self._pending = {key_of(p.name[:-5]) for p in self.root.iterdir()
                                 if p.name.endswith(".json") and not p.name.endswith(".answer.json")}
            return self._pending

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            d = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return d if isinstance(d, dict) else None

    async def put(self, key: str, command: str) -> str:
        check_command(command)
        cid = uuid.uuid4().hex[:12]
        await asyncio.to_thread(self._put, key, {"command": command, "id": cid, "at": time.time()})
        return cid

    async def pending(self, key: str) -> dict[str, Any] | None:
        known = self._pending if self._pending is not None else await asyncio.to_thread(self._listed)
        if key not in known:
            return None
        d = await asyncio.to_thread(self._read, self._path(key))
        return d if d is not None and "command" in d else None

    async def peek(self, key: str) -> Command | None:
        return None if (d := await self.pending(key)) is None else d["command"]

    def _done(self, key: str, cid: str | None, answer: dict[str, Any] | None) -> None:
        if answer is not None:
            files.replace(self._path(key, ".answer.json"), json.dumps({**answer, "id": cid}).encode(), mode=0o600)
        with self._lock:
            d = self._read(self._path(key))
            if cid is None or d is None or d.get("id") in (cid, None):
                self._path(key).unlink(missing_ok=True)
                if self._pending is not None:
                    self._pending.discard(key)

    async def done(self, key: str, cid: str | None = None, answer: dict[str, Any] | None = None) -> None:
        """The command ``cid`` was consumed: keep ``answer``; drop the pending file unless a newer
        command replaced it meanwhile."""
        await asyncio.to_thread(self._done, key, cid, answer)

    async def answer(self, key: str, cid: str) -> dict[str, Any] | None:
        d = await asyncio.to_thread(self._read, self._path(key, ".answer.json"))
        return d if d is not None and d.get("id") == cid else None


class ConfigMapCommands:
    """Pending operator commands as ConfigMaps on the hub's cluster, one per rollout: whichever
    replica receives the API call writes it; the replica running the rollout consumes it."""

    def __init__(self, api: Any, namespace: str) -> None:
        self.api = api
        self.namespace = namespace

    def _name(self, key: str) -> str:
        return configmap_name(key, prefix="fed-command")

    async def put(self, key: str, command: str) -> str:
        check_command(command)
        cid = uuid.uuid4().hex[:12]
        data = {"command": command, "id": cid, "at": f"{time.time():.3f}"}
        await self._write(key, lambda old: data)
        return cid

    async def _write(self, key: str, change: Any) -> None:
        labels = {**MANAGED_BY, "federation.io/state": "command"}
        for _ in range(3):  # a newer command replaces a pending one; a concurrent writer: read again
            cm = await kube.get_configmap(self.api, self.namespace, self._name(key))
            try:
                await kube.put_configmap(self.api, self.namespace, self._name(key), change(cm.data if cm else {}),
                                         labels=labels, annotations={KEY_ANNOTATION: key},
                                         resource_version=cm.resource_version if cm else None)
                return
            except kube.Conflict:
                continue
        raise kube.Conflict(f"command for {key}: the ConfigMap kept changing; try again")

    async def pending(self, key: str) -> dict[str, Any] | None:
        """The pending command, its id and what identifies this one request (its time of arrival
        and the ConfigMap's resourceVersion)."""
        cm = await kube.get_configmap(self.api, self.namespace, self._name(key))
        if cm is None or "command" not in cm.data:
            return None
        return {"command": cm.data["command"], "id": cm.data.get("id"),
                "at": f"{cm.data.get('at', '')}@{cm.resource_version}"}

    async def peek(self, key: str) -> str | None:
        return None if (d := await self.pending(key)) is None else str(d["command"])

    async def done(self, key: str, cid: str | None = None, answer: dict[str, Any] | None = None) -> None:
        """The command ``cid`` was consumed: keep ``answer`` for the replica whose API caller waits
        on it; keep a newer command that replaced it meanwhile."""
        if answer is None:
            await kube.delete_configmap(self.api, self.namespace, self._name(key))
            return

        def change(old: dict[str, str]) -> dict[str, str]:
            keep = {} if cid is None or old.get("id") in (cid, None) else \
                {k: v for k, v in old.items() if k in ("command", "id", "at")}
            return {**keep, "answer": json.dumps({**answer, "id": cid})}

        await self._write(key, change)

    async def answer(self, key: str, cid: str) -> dict[str, Any] | None:
        cm = await kube.get_configmap(self.api, self.namespace, self._name(key))
        try:
            d = json.loads(cm.data["answer"]) if cm is not None and "answer" in cm.data else None
        except ValueError:
            return None
        return d if isinstance(d, dict) and d.get("id") == cid else None
