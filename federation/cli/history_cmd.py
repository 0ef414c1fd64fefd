"""``fedctl history SERVICE``: the audit trail of a service's rollouts, read back from Git."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any

import typer

from federation import specfiles
from federation.cli import hub_cmd, output
from federation.core import spec as specs
from federation.core.errors import Problem, SpecError
from federation.core.weights import Subset, as_percent


def _short(analysis: str) -> str:
    """Table cell for the analysis trailer: failures spelled out, passes counted."""
    if not analysis:
        return "-"
    parts = [p.strip() for p in analysis.split(";") if p.strip()]
    bad = [p for p in parts if not p.endswith(":pass")]
    return "; ".join(bad) if bad else f"{len(parts)} checks pass"


def history(service: Annotated[str, typer.Argument(help="Service name (or namespace/name).")],
            fleet: Annotated[Path | None, typer.Option("--fleet", "-f", help="Fleet spec file (read the repos "
                                                       "yourself, when no hub is given).", envvar="FEDERATION_FLEET")] = None,
            hub_url: Annotated[str | None, typer.Option("--hub", envvar="FEDERATION_HUB", help="Ask this running "
                                                        "hub (its clones; nothing is cloned here).")] = None,
            token: hub_cmd.TokenOpt = None, token_file: hub_cmd.TokenFileOpt = None,
            cache: Annotated[Path, typer.Option(help="Where repos are cloned.", envvar="FEDERATION_CACHE")] = Path.home() / ".cache" / "federation",
            fmt: Annotated[output.Format, typer.Option("--output", "-o")] = output.Format.table,
            limit: Annotated[int, typer.Option(help="Commits to read per repo.")] = 1000) -> None:
    """Every step of SERVICE's rollouts: time, step, weights per subset, analysis, author, commits.
    Asks the running hub when --hub/FEDERATION_HUB is set, else reads the repos of --fleet."""
    name = service.split("/")[-1] if "/" not in service else service
    if hub_url:
        data = hub_cmd._call(hub_url, hub_cmd._token(token, token_file), "GET", f"/api/v1/history/{name}",
                             params={"limit": limit}, timeout=60.0)["items"]
    elif fleet is not None:
        data = [r.for_output() for r in _from_repos(fleet, cache, name, limit)]
    else:
        raise SpecError([Problem("--hub", "", "pass --hub (or set FEDERATION_HUB) to ask a running hub, "
                                 "or --fleet to read the fleet's repos")])
    rows = []
    for r in data:
        when = dt.datetime.fromtimestamp(r["time"], dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        weights = " ".join(f"{Subset.parse(k)}={as_percent(v)}" for k, v in sorted(r["weights"].items()))
        rows.append([when, r["rollout"], r["step"], r["stage"], as_percent(r["canaryWeight"]), weights,
                     _short(r["analysis"]), r["author"], ",".join(f"{k}:{v[:7]}" for k, v in sorted(r["commits"].items()))])
    output.emit(data, fmt, ["time (UTC)", "rollout", "step", "stage", "canary", "weights", "analysis", "author",
                            "commits"], rows, title=f"history of {service}")


def _from_repos(fleet: Path, cache: Path, service: str, limit: int) -> list[Any]:
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
    return hist.collect(repos, service, limit)


def register(app: typer.Typer) -> None:
    app.command("history")(history)
