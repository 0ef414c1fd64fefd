"""``fedctl validate``, ``fedctl plan`` and ``fedctl render``: offline commands on spec files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from federation import specfiles
from federation.cli import output
from federation.core import plan as planning
from federation.core import spec as specs
from federation.core.errors import Problem, SpecError
from federation.core.weights import as_percent, canary_shares, subsets_for

FleetOpt = Annotated[Path, typer.Option("--fleet", "-f", help="Fleet spec file.", envvar="FEDERATION_FLEET")]
FormatOpt = Annotated[output.Format, typer.Option("--output", "-o", help="Output format.")]


def validate(files: Annotated[list[Path], typer.Argument(help="Spec files (Fleet, FederatedCanary, ZoneRelease, or a Flagger Canary).")],
             fleet: Annotated[Path | None, typer.Option("--fleet", "-f", help="Also check canaries against this fleet.")] = None) -> None:
    """Validate spec files: exit 0 when valid, else one line per problem (FILE: field: message), exit 2."""
    problems: list[Problem] = []
    fleet_model: specs.Fleet | None = None
    if fleet is not None:
        try:
            fleet_model = specfiles.load_one(fleet, specs.Fleet)
        except SpecError as exc:
            problems.extend(exc.problems)
    for f in files:
        try:
            docs = specfiles.load(f)
        except SpecError as exc:
            problems.extend(exc.problems)
            continue
        for d in docs:
            if isinstance(d, specs.FederatedCanary) and fleet_model is not None:
                problems.extend(Problem(str(f), p, m) for p, m in specs.check_against_fleet(d, fleet_model))
    if problems:
        raise SpecError(problems)
    output.info(f"{len(files)} file(s) valid")


def plan(canary: Annotated[Path, typer.Argument(help="FederatedCanary spec file.")],
         fleet: FleetOpt,
         fmt: FormatOpt = output.Format.table) -> None:
    """Print the step ladder: per step, the weight of every (zone, version) subset."""
    fleet_model = specfiles.load_one(fleet, specs.Fleet)
    c = specfiles.load_canary(canary, fleet_model)
    steps = planning.plan(c.spec, fleet_model)
    subsets = sorted({s for st in steps for s in st.weights})
    data = {
        "rollout": c.key,
        "strategy": c.spec.analysis.strategy.value,
        "steps": [
            {"step": st.index, "stage": st.stage, "checks": st.checks,
             "canaryWeight": st.canary_bp, "mirrorWeight": st.mirror_bp, "matched": st.matched,
             "weights": {str(s): st.weights[s] for s in subsets}}
            for st in steps
        ],
        "unit": "basis points (10000 = 100%)",
    }
    rows = [[st.index, st.stage, st.checks, as_percent(st.canary_bp),
             as_percent(st.mirror_bp) if st.mirror_bp else "-", "yes" if st.matched else "-",
             *[as_percent(st.weights[s]) for s in subsets]] for st in steps]
    output.emit(data, fmt, ["step", "stage", "checks", "canary", "mirror", "match", *[str(s) for s in subsets]],
                rows, title=f"{c.key}: {c.spec.analysis.strategy.value}")


def render(canary: Annotated[Path, typer.Argument(help="FederatedCanary spec file.")],
           fleet: FleetOpt,
           router: Annotated[str, typer.Option(help="kuma, kuma-trafficroute, gatewayapi, linkerd, smi, "
                                                    "smi-v1alpha1, istio or envoy (default: the fleet's mesh).")] = "",
           weight: Annotated[float, typer.Option(help="Canary weight in percent (two decimals at most).")] = 0.0,
           mirror: Annotated[float, typer.Option(help="Mirror weight in percent.")] = 0.0,
           matched: Annotated[bool, typer.Option("--ab", help="Route the analysis' match to the canary.")] = False) -> None:
    """Print the manifests a router renders for canary weight N% (YAML)."""
    from federation.routers import factory
    from federation.routers.model import RouteRequest

    fleet_model = specfiles.load_one(fleet, specs.Fleet)
    c = specfiles.load_canary(canary, fleet_model)
    try:
        bp, mirror_bp = specs.percent_to_bp(weight), specs.percent_to_bp(mirror)
    except ValueError as exc:
        raise SpecError([Problem("--weight", "", str(exc))]) from None
    if not 0 <= bp <= specs.BASIS_POINTS:
        raise SpecError([Problem("--weight", "", f"{weight} is not between 0 and 100")])
    weights = subsets_for(c.spec, bp, fleet_model)
    s = c.spec
    req = RouteRequest(service=s.service.name, namespace=c.metadata.namespace, port=s.service.port,
                       primary_version=s.primary.version, canary_version=s.canary.version,
                       weights=tuple(sorted(weights.items())), step=0, rollout=c.key, mirror_weight=mirror_bp,
                       matched=matched, match=tuple(s.analysis.match or ()),
                       session_affinity=s.analysis.session_affinity, zones=tuple(fleet_model.zone_names),
                       canary_zones=tuple(s.canary.zones),
                       mesh_name=fleet_model.spec.mesh.name, mesh_namespace=fleet_model.spec.mesh.namespace,
                       canary_shares=canary_shares(s, fleet_model))
    name = router or factory.PROVIDER_DEFAULT[fleet_model.spec.mesh.provider.value]
    output.raw(specfiles.dump(factory.render(name, req)))


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
    app.command("plan")(plan)
    app.command("render")(render)
