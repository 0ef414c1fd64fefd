"""State store: one JSON file per rollout, written atomically (temp, fsync, rename, fsync dir).

Callers: the rollout worker (load at each tick, save after executing the decision's actions).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from federation.core.state import RolloutStatus


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / (key.replace("/", "__") + ".json")

    def load(self, key: str) -> RolloutStatus:
        p = self._path(key)
        if not p.exists():
            return RolloutStatus()
        return RolloutStatus.from_storage(json.loads(p.read_text()))

    def save(self, key: str, status: RolloutStatus) -> None:
        p = self._path(key)
        data = json.dumps(status.for_storage(), indent=1, sort_keys=True).encode()
        fd, tmp = tempfile.mkstemp(prefix=".state-", dir=self.root)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dfd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def keys(self) -> list[str]:
        return sorted(p.stem.replace("__", "/") for p in self.root.glob("*.json"))
