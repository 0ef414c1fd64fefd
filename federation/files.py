"""Atomic file replacement: write a temp file beside the target, rename over it. A reader (Envoy
watching an xDS path, a restarted hub reading its state, discovery reading the hub's Git clone)
sees the old file or the new one, never a half; Envoy notices file-based xDS changes only on such
a move. ``replace`` also fsyncs the file and its directory (state that must survive a crash).
Callers: ``hub.store``, ``hub.commands``, ``runtimes.edge``, ``gitops.repo`` (``replace_at``).
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path


def replace(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        replace_at(dfd, path.name, data, mode, durable=True)
    finally:
        os.close(dfd)


def replace_at(dir_fd: int, name: str, data: bytes, mode: int = 0o644, durable: bool = False) -> None:
    """Replace ``name`` in the directory open as ``dir_fd`` (a symlink there is replaced, never
    followed: the caller walked to the directory as it trusts); ``durable``: fsync file and directory."""
    tmp = f".{name}.{os.getpid()}-{threading.get_ident()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), mode)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    if durable:
        os.fsync(dir_fd)
