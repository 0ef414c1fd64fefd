"""Reading a bare repo's commits and their Federation-* trailers with plain git (not our code)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def commits(bare: Path | str, oldest_first: bool = False) -> list[dict[str, str]]:
    """Each commit as {sha, subject, <trailer without the Federation- prefix>: value}."""
    args = ["git", "--git-dir", str(bare), "log", "--format=%H%x1f%s%x1f%(trailers:only,unfold)%x1e"]
    if oldest_first:
        args.insert(4, "--reverse")
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    rows = []
    for rec in out.split("\x1e"):
        rec = rec.strip()
        if not rec:
            continue
        sha, subject, trailers = ([*rec.split("\x1f"), "", ""])[:3]
        d = {"sha": sha, "subject": subject}
        for line in trailers.splitlines():
            k, _, v = line.partition(": ")
            d[k.removeprefix("Federation-")] = v
        rows.append(d)
    return rows
