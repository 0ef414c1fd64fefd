"""Can the hub reach each zone's Git repo, Prometheus, SSH hosts (or Kubernetes API and Flux),
ingress Envoy, and the mesh's repo and edge Envoy? One row per part, never raising: a part that
cannot be reached is a row with ``ok`` False and the reason. Callers: ``fedctl clusters`` and the
web dashboard's fleet page (``hub.web``)."""

from __future__ import annotations

import asyncio
from typing import Any

from federation.core import spec as specs
from federation.core.errors import FederationError
from federation.gitops import repo as gitrepo
from federation.metrics.prometheus import Client
from federation.runtimes import envoy_admin, ssh
from federation.runtimes import kubernetes as kube


async def check(f: specs.Fleet) -> list[dict[str, Any]]:
    pool = ssh.Pool(retries=0, connect_timeout=5, call_timeout=5)
    try:
        async def git_row(name: str, g: specs.GitSource) -> dict[str, Any]:
            why = await asyncio.to_thread(gitrepo.reachable, g.url, g.branch, gitrepo.Credentials(g.auth))
            return {"zone": name, "part": "git", "target": f"{g.url}#{g.branch}", "ok": why is None, "detail": why or ""}

        async def prom_row(z: specs.Zone) -> dict[str, Any]:
            why = await Client(z.prometheus).healthy()
            return {"zone": z.name, "part": "prometheus", "target": z.prometheus.url, "ok": why is None,
                    "detail": why or ""}

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
