"""``fedctl demo``: run the local hybrid fleet and two rollouts, printing progress as it goes."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from federation.cli import output
from federation.core.state import SetWeights
from federation.core.weights import as_percent


def _fmt(v: float | None, unit: str = "") -> str:
    return "n/a" if v is None else f"{v:.4g}{unit}"


def print_event(kind: str, data: dict[str, Any]) -> None:
    if kind == "info":
        output.info(f"» {data['text']}")
    elif kind == "release":
        c, p = data["canary"], data["primary"]
        output.markup(f"\n[bold]{data.get('name', '')}[/bold]")
        output.info(f"  release engineer commits FederatedCanary: {p['version']}@{'+'.join(p['zones'])} -> "
                    f"{c['version']}@{'+'.join(c['zones'])} (mesh repo {data['sha']})")
    elif kind == "tick":
        _tick(data["report"], data["t"])
    elif kind == "outcome":
        o = data["outcome"]
        output.info(f"  => {o.phase} after {o.seconds:.0f}s, {o.steps} steps, {o.commits} commits; "
                    f"load {o.load.requests} requests ({o.load.non_2xx} non-2xx); edge now serves "
                    + ", ".join(f"{k}: {n}" for k, n in sorted(o.served.items())))
        from federation.demo import run as demo_run

        for line in demo_run.step_lines(o.timings):
            output.info(f"     {line}")
    elif kind == "summary":
        output.markup("\n[bold]Summary[/bold]")
        for text, passed in data["checks"]:
            output.markup(("[green]PASS[/green] " if passed else "[red]FAIL[/red] ") + text)
        output.markup("[bold]Figures[/bold]")
        for line in data.get("figures", []):
            output.info(f"  {line}")
        output.info(f"total {data['seconds']:.0f}s. Look around:")
        output.info(f"  git --git-dir {data['mesh']} log --format='%h %s%n%(trailers:only)'")
        output.info(f"  fedctl history frontend --fleet {data['fleet']}")
    elif kind == "keep":
        output.info(f"left running in {data['workdir']} (process groups in {data['workdir']}/processes.json)")
        output.info(f"  fleet file: {data['fleet']}   edge: {data['edge']}")
        output.info("  stop everything (agents first, they stop their app instances):")
        output.info("  kill -TERM -- " + " ".join(f"-{g}" for g in data["groups"]))


def _tick(r: Any, t: float) -> None:
    st = r.decision.status
    sw = [a for a in r.decision.actions if isinstance(a, SetWeights)]
    checks = st.last_checks if st.last_checks is not r.status.last_checks else ()
    if sw:
        a = sw[-1]
        weights = "  ".join(f"{s}={as_percent(w)}" for s, w in a.weights)
        output.info(f"  [{t:6.1f}s] step {a.step} {a.stage:<10} canary {as_percent(a.canary_weight):>6}  {weights}")
    if checks and (sw or st.failed_checks != r.status.failed_checks or st.message != r.status.message):
        per: dict[str, list[str]] = {}
        for c in checks:
            per.setdefault(c.metric, []).append(f"{c.zone or 'global'} {_fmt(c.value)}{'' if c.outcome == 'pass' else ' ' + c.outcome.upper()}")
        line = " | ".join(f"{m}: " + ", ".join(v) for m, v in per.items())
        output.info(f"  [{t:6.1f}s]   analysis: {line} | failed checks {st.failed_checks}")
    if st.phase != r.status.phase:
        output.info(f"  [{t:6.1f}s] phase {r.status.phase.value} -> {st.phase.value}: {st.message}")
    if r.error:
        output.error(f"  [{t:6.1f}s] step not applied, will retry: {r.error}")


def demo(workdir: Annotated[Path, typer.Option(help="Workspace for repos, keys, configs and logs.")] = Path(".federation-demo"),
         fast: Annotated[bool, typer.Option("--fast", help="Short intervals: the whole demo in under 3 minutes.")] = False,
         keep: Annotated[bool, typer.Option("--keep", help="Leave the fleet running at the end.")] = False,
         fleet_only: Annotated[bool, typer.Option("--fleet-only", help="Only start the fleet (no rollouts) and "
                                                  "leave it running, for a hub of your own (see docs/operating.md).")] = False,
         verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log the hub's decisions.")] = False) -> None:
    """Run a real hybrid rollout on this machine: Git, Envoy, Prometheus, SSH agents and hey.

    The three zones (eks, onprem, vms) are simulated with local processes: eks and onprem as
    Kubernetes zones on a local kube-apiserver (Flux, the kubelet and the zone mesh are local
    stand-ins) when scripts/build-kube has built it, vms as a VM zone; point the hub at real
    clusters with a Fleet file instead (see README).
    """
    from federation.demo import run as demo_run

    # The progress lines already tell every event; logs are for --verbose.
    logging.basicConfig(level=logging.INFO if verbose else logging.CRITICAL,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    output.markup("[bold]federation demo[/bold]: zones eks, onprem and vms are SIMULATED on this machine "
                  "(local processes behind real Envoy, Prometheus, Git and SSH; eks and onprem as Kubernetes "
                  "zones on a real local kube-apiserver when it is built, with local stand-ins for Flux, the "
                  "kubelet and the zone mesh)")
    if fleet_only:
        raise typer.Exit(asyncio.run(demo_run.fleet_only(workdir, print_event)))
    code = demo_run.run_sync(workdir, fast, keep, print_event)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
