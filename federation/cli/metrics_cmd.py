"""``fedctl metrics SERVICE``: the current global and per-zone figures for a canary, judged."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from federation import specfiles
from federation.cli import hub_cmd, output
from federation.core import analysis as core_analysis
from federation.core import spec as specs
from federation.core.errors import Problem, SpecError
from federation.core.state import CheckResult


def _mesh_repo(fleet: specs.Fleet, cache: Path) -> Any:
    from federation.gitops import repo as gitrepo

    m = fleet.spec.mesh
    repo = gitrepo.Repo(m.git.url, m.git.branch, cache / fleet.metadata.name / "mesh", gitrepo.Credentials(m.git.auth))
    repo.ensure()
    return repo


def _under(fleet: specs.Fleet, folder: str) -> str:
    return "/".join(p for p in (fleet.spec.mesh.git.path, folder) if p and p != ".")


def _canary_from_mesh(fleet: specs.Fleet, repo: Any, service: str) -> specs.FederatedCanary:
    for path in repo.files(_under(fleet, "canaries")):
        for d in specfiles.load_text(repo.read(path) or "", path):
            if isinstance(d, specs.FederatedCanary) and service in (d.metadata.name, d.key):
                return d
    raise SpecError([Problem(fleet.spec.mesh.git.url, "canaries/", f"no FederatedCanary for service {service!r}")])


def _templates(fleet: specs.Fleet, repo: Any, canary: specs.FederatedCanary,
               where: str) -> dict[str, specs.MetricTemplate | str]:
    """The mesh repo's MetricTemplates, as the hub loads them; a metric naming one that is missing
    or invalid, or that lacks a variable the template uses, is a spec error of that metric."""
    under = _under(fleet, "templates")
    found = specfiles.metric_templates((p, repo.read(p) or "") for p in repo.files(under))
    problems = [Problem(where, f, msg) for f, msg in specs.check_templates(canary, specfiles.template_queries(found))]
    for i, m in enumerate(canary.spec.analysis.metrics):
        if m.template_ref is None:
            continue
        t = found.get(m.template_ref.name)
        field = f"spec.analysis.metrics[{i}].templateRef"
        if t is None:
            problems.append(Problem(where, field, f"metric {m.name!r}: MetricTemplate {m.template_ref.name!r} not "
                                    f"found in {fleet.spec.mesh.git.url} {under or '.'}/"))
        elif isinstance(t, str):
            problems.append(Problem(where, field, f"metric {m.name!r}: MetricTemplate {m.template_ref.name!r} is "
                                    f"invalid: {t}"))
    if problems:
        raise SpecError(problems)
    return found


def metrics(service: Annotated[str, typer.Argument(help="Service (name or namespace/name).")],
            fleet: Annotated[Path | None, typer.Option("--fleet", "-f", envvar="FEDERATION_FLEET",
                                                       help="Fleet spec file (query yourself, when no hub is given).")] = None,
            hub_url: Annotated[str | None, typer.Option("--hub", envvar="FEDERATION_HUB", help="Ask this running "
                                                        "hub (nothing is cloned here).")] = None,
            token: hub_cmd.TokenOpt = None, token_file: hub_cmd.TokenFileOpt = None,
            canary: Annotated[Path | None, typer.Option(help="FederatedCanary file (default: from the mesh repo).")] = None,
            cache: Annotated[Path, typer.Option(envvar="FEDERATION_CACHE")] = Path.home() / ".cache" / "federation",
            fmt: Annotated[output.Format, typer.Option("--output", "-o")] = output.Format.table) -> None:
    """Query every canary zone's Prometheus now; print global and per-zone figures and verdicts.
    Exit 0 passed (or no traffic yet, said so), 1 a check failed, 3 a zone's Prometheus or a metric's
    backend (a MetricTemplate's provider) is broken.
    Asks the running hub when --hub/FEDERATION_HUB is set (and no --canary file is given)."""
    if hub_url and canary is None:
        t = hub_cmd._token(token, token_file)
        key = hub_cmd._key(service, hub_cmd._call(hub_url, t, "GET", "/api/v1/rollouts")["items"])
        res = hub_cmd._call(hub_url, t, "GET", f"/api/v1/rollouts/{key}/metrics", timeout=60.0)
        checks = [CheckResult.from_storage(c) for c in res["checks"]]
        requests = [c.get("requests") for c in res["checks"]]
        broken: dict[str, str] = res["broken"]
        key, version, zones = res["rollout"], res["canary"]["version"], res["canary"]["zones"]
    elif fleet is not None:
        from federation.metrics.analysis import Analyzer
        from federation.runtimes.kubernetes import ZoneObjects
        f = specfiles.load_one(fleet, specs.Fleet)
        mesh = _mesh_repo(f, cache) if canary is None else None
        c = specfiles.load_canary(canary, f) if canary else _canary_from_mesh(f, mesh, service)
        found: dict[str, specs.MetricTemplate | str] = {}
        if any(m.template_ref is not None for m in c.spec.analysis.metrics):
            mesh = mesh or _mesh_repo(f, cache)
            found = _templates(f, mesh, c, str(canary) if canary else f"{f.spec.mesh.git.url} canaries/")
        kube = ZoneObjects()
        analyzer = Analyzer(f, metric_templates=found, kube=kube)

        async def gather() -> tuple[Any, dict[str, str]]:
            zs = c.spec.canary.zones
            samples, health = await asyncio.gather(analyzer.collect(c.spec, c.metadata.namespace, name=c.metadata.name),
                                                   asyncio.gather(*[analyzer.clients[z].healthy() for z in zs]))
            return samples, {z: why for z, why in zip(zs, health, strict=True) if why}

        try:
            samples, broken = asyncio.run(gather())
        finally:
            kube.close()
        broken = {**{s.zone: f"{s.metric}: {s.reason}" for s in samples if s.broken and s.zone}, **broken}
        checks = list(core_analysis.judge(c.spec, samples).checks)
        by = {(s.metric, s.zone): s for s in samples}
        requests = [getattr(by.get((ch.metric, ch.zone)), "requests", None) for ch in checks]
        key, version, zones = c.key, c.spec.canary.version, c.spec.canary.zones
    else:
        raise SpecError([Problem("--hub", "", "pass --hub (or set FEDERATION_HUB) to ask a running hub, "
                                 "or --fleet to query the zones' Prometheus yourself")])
    data, rows = [], []
    for check, n in zip(checks, requests, strict=True):
        data.append({"metric": check.metric, "zone": check.zone or "global", "value": check.value,
                     "requests": n, "outcome": check.outcome, "dryRun": check.dry_run, "detail": check.message})
        rows.append([check.metric, check.zone or "global", "n/a" if check.value is None else f"{check.value:.4g}",
                     "-" if n is None else f"{n:.0f}", check.outcome + (" (dry-run)" if check.dry_run else ""),
                     check.message])
    output.emit({"rollout": key, "canary": version, "checks": data}, fmt,
                ["metric", "scope", "value", "requests", "outcome", "detail"], rows,
                title=f"{key}: {version} in {', '.join(zones)}")
    judged(core_analysis.Verdict(tuple(checks)), broken, version)


def judged(verdict: core_analysis.Verdict, broken: dict[str, str], version: str) -> None:
    """Exit 3 when a zone's Prometheus or a metric's backend is broken (one line per zone), 1 when a check failed on
    real figures, 0 when it passed or when there is simply no traffic to judge yet (said so)."""
    for zone, why in broken.items():
        output.error(f"zone {zone}: {why}")
    if broken:
        raise typer.Exit(3)
    if any(ch.outcome == "fail" for ch in verdict.decisive):  # dry-run metrics never fail
        raise typer.Exit(1)
    nodata = [ch for ch in verdict.decisive if ch.outcome == "nodata"]
    if nodata:
        if all("no requests" in ch.message or "empty result" in ch.message for ch in nodata):
            output.info(f"no traffic yet to {version}: nothing to judge (no requests in the metrics' window)")
            return
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("metrics")(metrics)
