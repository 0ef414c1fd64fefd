"""``fedctl clusters``: can the hub reach each zone's Git, Prometheus, and SSH hosts (or API)?"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from federation import specfiles
from federation.cli import output
from federation.core import spec as specs


def clusters(fleet: Annotated[Path, typer.Option("--fleet", "-f", envvar="FEDERATION_FLEET")],
             fmt: Annotated[output.Format, typer.Option("--output", "-o")] = output.Format.table) -> None:
    """Reachability of every zone's Git repo, Prometheus, SSH hosts (or API), ingress Envoy and the
    edge Envoy (admin /ready and the route version each runs); exit 3 when any is down."""
    from federation.runtimes import reach
    f = specfiles.load_one(fleet, specs.Fleet)
    rows = asyncio.run(reach.check(f))
    output.emit(rows, fmt, ["zone", "part", "target", "ok", "detail"],
                [[r["zone"], r["part"], r["target"], "yes" if r["ok"] else "NO", r["detail"]] for r in rows],
                title=f"fleet {f.metadata.name}")
    if not all(r["ok"] for r in rows):
        raise typer.Exit(3)


def register(app: typer.Typer) -> None:
    app.command("clusters")(clusters)
