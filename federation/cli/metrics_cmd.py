"""``fedctl metrics SERVICE``: the current global and per-zone figures for a canary, judged."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from federation import specfiles
from federation.cli import output
from federation.core import analysis as core_analysis
from federation.core import spec as specs
from federation.core.errors import Problem, SpecError


def _canary_from_mesh(fleet: specs.Fleet, service: str, cache: Path) -> specs.FederatedCanary:
    from federation.gitops import repo as gitrepo

    m = fleet.spec.mesh
    repo = gitrepo.Repo(m.git.url, m.git.branch, cache / fleet.metadata.name / "mesh", gitrepo.Credentials(m.git.auth))
    repo.ensure()
    base = "/".join(p for p in (m.git.path, "canaries") if p and p != ".")
    for path in repo.files(base):
        for d in specfiles.load(repo.workdir / path):
            if isinstance(d, specs.FederatedCanary) and service in (d.metadata.name, d.key):
                return d
    raise SpecError([Problem(m.git.url, "canaries/", f"no FederatedCanary for service {service!r}")])


def metrics(service: Annotated[str, typer.Argument(help="Service (name or namespace/name).")],
            fleet: Annotated[Path, typer.Option("--fleet", "-f", envvar="FEDERATION_FLEET")],
            canary: Annotated[Path | None, typer.Option(help="FederatedCanary file (default: from the mesh repo).")] = None,
            cache: Annotated[Path, typer.Option(envvar="FEDERATION_CACHE")] = Path.home() / ".cache" / "federation",
            fmt: Annotated[output.Format, typer.Option("--output", "-o")] = output.Format.table) -> None:
    """Query every canary zone's Prometheus now; print global and per-zone figures and verdicts."""
    from federation.metrics.analysis import Analyzer
    f = specfiles.load_one(fleet, specs.Fleet)
    c = specfiles.load_canary(canary, f) if canary else _canary_from_mesh(f, service, cache)
    analyzer = Analyzer(f)

    async def gather() -> tuple[Any, dict[str, str]]:
        zones = c.spec.canary.zones
        samples, health = await asyncio.gather(analyzer.collect(c.spec, c.metadata.namespace),
                                               asyncio.gather(*[analyzer.clients[z].healthy() for z in zones]))
        return samples, {z: why for z, why in zip(zones, health, strict=True) if why}

    samples, broken = asyncio.run(gather())
    verdict = core_analysis.judge(c.spec, samples)
    by = {(s.metric, s.zone): s for s in samples}
    data, rows = [], []
    for check in verdict.checks:
        s = by.get((check.metric, check.zone))
        requests = s.requests if s else None
        data.append({"metric": check.metric, "zone": check.zone or "global", "value": check.value,
                     "requests": requests, "outcome": check.outcome, "detail": check.message})
        rows.append([check.metric, check.zone or "global", "n/a" if check.value is None else f"{check.value:.4g}",
                     "-" if requests is None else f"{requests:.0f}", check.outcome, check.message])
    output.emit({"rollout": c.key, "canary": c.spec.canary.version, "checks": data}, fmt,
                ["metric", "scope", "value", "requests", "outcome", "detail"], rows,
                title=f"{c.key}: {c.spec.canary.version} in {', '.join(c.spec.canary.zones)}")
    judged(verdict, broken, c.spec.canary.version)


def judged(verdict: core_analysis.Verdict, broken: dict[str, str], version: str) -> None:
    """Exit 3 when a zone's Prometheus is broken (one line per zone), 1 when a check failed on
    real figures, 0 when it passed or when there is simply no traffic to judge yet (said so)."""
    for zone, why in broken.items():
        output.error(f"zone {zone}: {why}")
    if broken:
        raise typer.Exit(3)
    if any(ch.outcome == "fail" for ch in verdict.checks):
        raise typer.Exit(1)
    nodata = [ch for ch in verdict.checks if ch.outcome == "nodata"]
    if nodata:
        if all("no requests" in ch.message or "empty result" in ch.message for ch in nodata):
            output.info(f"no traffic yet to {version}: nothing to judge (no requests in the metrics' window)")
            return
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("metrics")(metrics)
