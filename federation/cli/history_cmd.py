"""``fedctl history SERVICE``: the audit trail of a service's rollouts, read back from Git."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from federation import specfiles
from federation.cli import output
from federation.core import spec as specs
from federation.core.weights import as_percent


def _short(analysis: str) -> str:
    """Table cell for the analysis trailer: failures spelled out, passes counted."""
    if not analysis:
        return "-"
    parts = [p.strip() for p in analysis.split(";") if p.strip()]
    bad = [p for p in parts if not p.endswith(":pass")]
    return "; ".join(bad) if bad else f"{len(parts)} checks pass"


def history(service: Annotated[str, typer.Argument(help="Service name (or namespace/name).")],
            fleet: Annotated[Path, typer.Option("--fleet", "-f", help="Fleet spec file.", envvar="FEDERATION_FLEET")],
            cache: Annotated[Path, typer.Option(help="Where repos are cloned.", envvar="FEDERATION_CACHE")] = Path.home() / ".cache" / "federation",
            fmt: Annotated[output.Format, typer.Option("--output", "-o")] = output.Format.table,
            limit: Annotated[int, typer.Option(help="Commits to read per repo.")] = 1000) -> None:
    """Every step of SERVICE's rollouts: time, step, weights per subset, analysis, author, commits."""
    from federation.gitops import history as hist
    from federation.gitops import repo as gitrepo
    f = specfiles.load_one(fleet, specs.Fleet)
    repos: dict[str, gitrepo.Repo] = {}
    base = cache / f.metadata.name
    for z in f.spec.zones:
        repos[z.name] = gitrepo.Repo(z.git.url, z.git.branch, base / z.name, gitrepo.Credentials(z.git.auth))
    m = f.spec.mesh
    repos["mesh"] = gitrepo.Repo(m.git.url, m.git.branch, base / "mesh", gitrepo.Credentials(m.git.auth))
    for r in repos.values():
        r.ensure()
    records = hist.collect(repos, service.split("/")[-1] if "/" not in service else service, limit)
    data = [r.for_output() for r in records]
    rows = []
    for h in records:
        r = h.record
        when = dt.datetime.fromtimestamp(h.time, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        weights = " ".join(f"{s}={as_percent(v)}" for s, v in r.weights)
        rows.append([when, r.rollout, r.step, r.stage.value, as_percent(r.canary_weight), weights,
                     _short(r.analysis), h.author, ",".join(f"{k}:{v[:7]}" for k, v in sorted(h.commits.items()))])
    output.emit(data, fmt, ["time (UTC)", "rollout", "step", "stage", "canary", "weights", "analysis", "author",
                            "commits"], rows, title=f"history of {service}")


def register(app: typer.Typer) -> None:
    app.command("history")(history)
