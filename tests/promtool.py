"""promtool (Debian's prometheus package, installed by scripts/install-system-deps) for the tests
of deploy/prometheus and deploy/grafana."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    assert exe, "promtool not found on PATH (Debian package prometheus: scripts/install-system-deps)"
    return subprocess.run([exe, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
