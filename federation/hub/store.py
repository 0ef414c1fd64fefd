"""State stores: where each rollout's status lives between ticks.

``FileStore`` (default, a hub on one state directory): one JSON file per rollout, written
atomically (temp, fsync, rename, fsync dir). ``ConfigMapStore`` (a hub in a cluster): one ConfigMap
per rollout on the hub's cluster, written at the resourceVersion last read, so a replica that lost
a rollout's Lease cannot overwrite the status its successor wrote (the write is refused with 409,
raised as ``Conflict``, and nothing is saved). ``MemoryStore``: the same in memory. Operator
commands wait in ``hub.commands``, named the same way. Callers: the worker, the hub's service,
its command desk and views.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import urllib.parse
from pathlib import Path
from typing import Any, Protocol

from federation import files
from federation.core.state import RolloutStatus
from federation.runtimes import kubernetes as kube


class Store(Protocol):
    async def load(self, key: str) -> RolloutStatus: ...

    async def save(self, key: str, status: RolloutStatus) -> None: ...

    async def keys(self) -> list[str]: ...


def file_name(key: str) -> str:
    """A rollout key as one file name, injectively: percent-encoding (``/`` is ``%2F``, ``%`` is
    ``%25``), so ``team/shop/web`` and ``team__shop/web`` never share a state or command file."""
    return urllib.parse.quote(key, safe="")


def key_of(name: str) -> str:
    return urllib.parse.unquote(name)


def _legacy_name(key: str) -> str | None:
    """The name before percent-encoding (``/`` as ``__``), read when no new file exists yet; only
    where it cannot be another key's (keys are DNS labels now: no ``_`` in them)."""
    return key.replace("/", "__") if "_" not in key and "%" not in key else None


def _encode(status: RolloutStatus) -> str:
    # Compact: json's C encoder (with ``indent`` it falls back to the pure-Python one, the largest
    # cost of a hub tick at 10,000 rollouts).
    return json.dumps(status.for_storage(), sort_keys=True, separators=(",", ":"))


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Statuses read or written here: one hub per state directory (``hub.locks``) writes these
        # files, so a tick loads its rollout's status without a file read (or a thread).
        self._known: dict[str, RolloutStatus] = {}
        # Bumped when a save starts and when it ends: a load whose file read overlapped a save
        # (the API's, beside the worker's) does not cache what it read, which may be the old file.
        self._saves: dict[str, int] = {}

    def _path(self, key: str) -> Path:
        return self.root / (file_name(key) + ".json")

    def read(self, key: str) -> RolloutStatus:
        p = self._path(key)
        legacy = _legacy_name(key)
        if not p.exists() and legacy is not None and (self.root / (legacy + ".json")).exists():
            p = self.root / (legacy + ".json")
        if not p.exists():
            return RolloutStatus()
        return RolloutStatus.from_storage(json.loads(p.read_text()))

    def write(self, key: str, status: RolloutStatus) -> None:
        files.replace(self._path(key), _encode(status).encode(), mode=0o600)

    def stored_keys(self) -> list[str]:
        return sorted({key_of(p.stem) if "%" in p.stem or "__" not in p.stem else p.stem.replace("__", "/")
                       for p in self.root.glob("*.json")})

    # The file work (reads, fsync'd writes) runs in a worker thread, off the event loop.
    async def load(self, key: str) -> RolloutStatus:
        while (known := self._known.get(key)) is None:
            saves = self._saves.get(key, 0)
            read = await asyncio.to_thread(self.read, key)
            if self._saves.get(key, 0) == saves:  # no save overlapped the read: it is the file's truth
                self._known[key] = read
                return read
        return known

    async def save(self, key: str, status: RolloutStatus) -> None:
        self._saves[key] = self._saves.get(key, 0) + 1
        self._known.pop(key, None)  # a failed write leaves the file as the truth
        try:
            await asyncio.to_thread(self.write, key, status)
            self._known[key] = status
        finally:
            self._saves[key] += 1

    async def keys(self) -> list[str]:
        return await asyncio.to_thread(self.stored_keys)


class MemoryStore:
    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self._decoded: dict[str, tuple[str, RolloutStatus]] = {}  # key -> (what data held, its status)

    async def load(self, key: str) -> RolloutStatus:
        raw = self.data.get(key)
        if raw is None:
            return RolloutStatus()
        decoded = self._decoded.get(key)
        if decoded is None or decoded[0] is not raw:
            decoded = self._decoded[key] = (raw, RolloutStatus.from_storage(json.loads(raw)))
        return decoded[1]

    async def save(self, key: str, status: RolloutStatus) -> None:
        raw = self.data[key] = _encode(status)
        self._decoded[key] = (raw, status)  # as FileStore keeps what it wrote

    async def keys(self) -> list[str]:
        return sorted(self.data)


MANAGED_BY = {"app.kubernetes.io/managed-by": "federation-hub", "federation.io/state": "rollout"}
KEY_ANNOTATION = "federation.io/rollout"
DATA_KEY = "status.json"


def configmap_name(key: str, prefix: str = "fed-rollout") -> str:
    """A DNS-1123 name for a rollout key ("ns/name"): readable, and unique thanks to a short hash."""
    readable = re.sub(r"[^a-z0-9-]+", "-", key.lower()).strip("-")[:40].strip("-")
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return f"{prefix}-{readable}-{digest}"


class ConfigMapStore:
    """One ConfigMap per rollout in ``namespace`` of the hub's cluster, written with resourceVersion."""

    def __init__(self, api: Any, namespace: str) -> None:
        self.api = api  # runtimes.kubernetes.Api of the hub's cluster
        self.namespace = namespace
        self.versions: dict[str, str] = {}  # key -> resourceVersion last read or written by us

    async def load(self, key: str) -> RolloutStatus:
        cm = await kube.get_configmap(self.api, self.namespace, configmap_name(key))
        if cm is None or DATA_KEY not in cm.data:
            self.versions.pop(key, None)
            return RolloutStatus()
        self.versions[key] = cm.resource_version
        return RolloutStatus.from_storage(json.loads(cm.data[DATA_KEY]))

    async def save(self, key: str, status: RolloutStatus) -> None:
        """Raises ``kubernetes.Conflict`` when the ConfigMap changed since this store last read or
        wrote it: the caller's status is not saved, and its next load sees the other writer's."""
        rv = self.versions.pop(key, None)
        self.versions[key] = await kube.put_configmap(
            self.api, self.namespace, configmap_name(key), {DATA_KEY: _encode(status)}, labels=MANAGED_BY,
            annotations={KEY_ANNOTATION: key}, resource_version=rv)

    async def keys(self) -> list[str]:
        selector = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())
        found = await kube.list_configmaps(self.api, self.namespace, selector)
        return sorted(cm.annotations[KEY_ANNOTATION] for cm in found if KEY_ANNOTATION in cm.annotations)
