"""Credentials a MetricTemplate's ``secretRef`` names, read where a Kubernetes Secret would be
mounted or from the environment; values are returned to the backend, never logged or put in errors.

``FEDERATION_SECRET_<NAME>_<KEY>`` (name and key upper-cased, other characters as ``_``) wins over
the file ``<dir>/<name>/<key>``; ``dir`` is the Fleet's ``metrics.secretsDir``, else
``FEDERATION_SECRETS_DIR``, else ``/etc/federation/secrets``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

DEFAULT_DIR = "/etc/federation/secrets"


def env_name(name: str, key: str) -> str:
    return "FEDERATION_SECRET_" + re.sub(r"[^A-Z0-9]", "_", f"{name}_{key}".upper())


class Store:
    def __init__(self, directory: str | None = None) -> None:
        self.dir = Path(directory or os.environ.get("FEDERATION_SECRETS_DIR") or DEFAULT_DIR)

    def where(self, name: str, key: str) -> tuple[str, str] | None:
        """("env", variable) or ("file", path) holding the key, or None."""
        env = env_name(name, key)
        if os.environ.get(env):
            return "env", env
        path = self.dir / name / key
        if path.is_file():
            return "file", str(path)
        return None

    def value(self, name: str, key: str) -> str | None:
        found = self.where(name, key)
        if found is None:
            return None
        if found[0] == "env":
            return os.environ[found[1]]
        try:
            return Path(found[1]).read_text(encoding="utf-8").strip() or None
        except OSError:
            return None

    def require(self, name: str, key: str, provider: str) -> str:
        from federation.metrics.prometheus import NoData

        v = self.value(name, key)
        if v is None:
            raise NoData(f"{provider}: secret {name!r} has no {key!r} (set {env_name(name, key)} or "
                         f"write {self.dir / name / key})")
        return v
