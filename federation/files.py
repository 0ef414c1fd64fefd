"""Atomic file replacement: write a temp file beside the target, fsync, rename over it, fsync the
directory. A reader (Envoy watching an xDS path, a restarted hub reading its state) sees the old
file or the new one, never a half; Envoy notices file-based xDS changes only on such a move.
Callers: ``hub.store``, ``runtimes.edge``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def replace(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
