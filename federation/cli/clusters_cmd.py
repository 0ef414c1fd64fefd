"""``fedctl clusters``: can the hub reach each zone's Git, Prometheus, and SSH hosts (or API)?"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from federation import specfiles
from federation.cli import output
from federation.core import spec as specs
from federation.core.errors import FederationError


def clusters(fleet: Annotated[Path, typer.Option("--fleet", "-f", envvar="FEDERATION_FLEET")],
             fmt: Annotated[output.Format, typer.Option("--output", "-o")] = output.Format.table) -> None:
    """Reachability of every zone's Git repo, Prometheus, SSH hosts (or API), ingress Envoy and the
    edge Envoy (admin /ready and the route version each runs); exit 3 when any is down."""
    from federation.gitops import repo as gitrepo
    from federation.metrics.prometheus import Client
    from federation.runtimes import envoy_admin, ssh
    from federation.runtimes import kubernetes as kube
    f = specfiles.load_one(fleet, specs.Fleet)

    async def check() -> list[dict[str, Any]]:
        pool = ssh.Pool(retries=0, connect_timeout=5, call_timeout=5)
        try:
            async def git_row(name: str, g: specs.GitSource) -> dict[str, Any]:
                why = await asyncio.to_thread(gitrepo.reachable, g.url, g.branch, gitrepo.Credentials(g.auth))
                return {"zone": name, "part": "git", "target": f"{g.url}#{g.branch}", "ok": why is None, "detail": why or ""}

            async def prom_row(z: specs.Zone) -> dict[str, Any]:
                why = await Client(z.prometheus).healthy()
                return {"zone": z.name, "part": "prometheus", "target": z.prometheus.url, "ok": why is None, "detail": why or ""}

            async def host_row(z: specs.Zone, h: specs.Host) -> dict[str, Any]:
                t = ssh.Target(h.address, h.port, h.user, z.known_hosts or "", z.identity_file)
                try:
                    r = await pool.call(t, "hello")
                    return {"zone": z.name, "part": "ssh", "target": str(t), "ok": bool(r.get("ok")),
                            "detail": f"agent {r.get('agent_version')} protocol {r.get('protocol')}"}
                except FederationError as exc:
                    return {"zone": z.name, "part": "ssh", "target": str(t), "ok": False, "detail": str(exc)}

            async def kube_row(z: specs.Zone) -> dict[str, Any]:
                target = (z.kubeconfig.context if z.kubeconfig else None) or "in-cluster"
                flux = z.flux or specs.FluxRef()
                try:
                    fz = kube.FluxZone(kube.Api(kube.api_client(z.kubeconfig), retries=0), flux.namespace,
                                       flux.kustomization or z.name)
                    st = await fz.status()
                    return {"zone": z.name, "part": "kubernetes", "target": target, "ok": not st.failing,
                            "detail": f"Flux {'ready' if st.ready else st.reason} at {(st.revision or '-')[:12]}"}
                except FederationError as exc:
                    return {"zone": z.name, "part": "kubernetes", "target": target, "ok": False, "detail": str(exc)}

            async def envoy_row(zone: str, part: str, address: str, port: int) -> dict[str, Any]:
                st = await envoy_admin.check(address, port)
                return {"zone": zone, "part": part, "target": f"{address}:{port}", "ok": st.ok, "detail": st.detail}

            tasks = [git_row(z.name, z.git) for z in f.spec.zones] + [git_row("mesh", f.spec.mesh.git)]
            tasks += [envoy_row(z.name, "ingress envoy", z.ingress.address, z.ingress.admin_port)
                      for z in f.spec.zones if z.ingress is not None and z.ingress.admin_port]
            if f.spec.mesh.edge is not None:
                edge = f.spec.mesh.edge.admin
                tasks.append(envoy_row("mesh", "edge envoy", edge.address, edge.port))
            tasks += [prom_row(z) for z in f.spec.zones]
            tasks += [host_row(z, h) for z in f.spec.zones if z.kind is specs.ZoneKind.VM for h in z.hosts or []]
            tasks += [kube_row(z) for z in f.spec.zones if z.kind is specs.ZoneKind.KUBERNETES]
            return list(await asyncio.gather(*tasks))
        finally:
            await pool.close()

    rows = asyncio.run(check())
    output.emit(rows, fmt, ["zone", "part", "target", "ok", "detail"],
                [[r["zone"], r["part"], r["target"], "yes" if r["ok"] else "NO", r["detail"]] for r in rows],
                title=f"fleet {f.metadata.name}")
    if not all(r["ok"] for r in rows):
        raise typer.Exit(3)


def register(app: typer.Typer) -> None:
    app.command("clusters")(clusters)
