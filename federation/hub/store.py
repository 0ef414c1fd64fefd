"""State store: one JSON file per rollout, written atomically (temp, fsync, rename, fsync dir).

Callers: the rollout worker (load at each tick, save after executing the decision's actions).
"""

from __future__ import annotations

import json
from pathlib import Path

from federation import files
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
        data = json.dumps(status.for_storage(), indent=1, sort_keys=True).encode()
        files.replace(self._path(key), data, mode=0o600)

    def keys(self) -> list[str]:
        return sorted(p.stem.replace("__", "/") for p in self.root.glob("*.json"))
