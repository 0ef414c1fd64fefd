"""``fedctl agents status|install``: the VM agents of a fleet's vm zones."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from federation import specfiles
from federation.cli import output
from federation.core import spec as specs
from federation.core.errors import FederationError, PermanentError, Problem, SpecError

agents = typer.Typer(help="The VM agents of the fleet's vm zones.", no_args_is_help=True)
FleetOpt = Annotated[Path, typer.Option("--fleet", "-f", envvar="FEDERATION_FLEET", help="Fleet spec file.")]


def _vm_zones(fleet: specs.Fleet, zone: str | None) -> list[specs.Zone]:
    zones = [z for z in fleet.spec.zones if z.kind is specs.ZoneKind.VM and (zone is None or z.name == zone)]
    if zone is not None and not zones:
        raise SpecError([Problem("--zone", "", f"no vm zone {zone!r} in fleet {fleet.metadata.name}")])
    return zones


@agents.command("drain")
def drain(fleet: FleetOpt, zone: Annotated[str, typer.Option(help="The vm zone.")],
          host: Annotated[list[str] | None, typer.Option(help="Only these hosts (address or user@address:port); "
                                                              "repeatable. Default: every host of the zone.")] = None,
          undo: Annotated[bool, typer.Option("--undo", help="Put the hosts back in rotation.")] = False,
          timeout: Annotated[float, typer.Option(help="Seconds to wait for in-flight requests to finish.")] = 30.0,
          fmt: Annotated[output.Format, typer.Option("--output", "-o")] = output.Format.table) -> None:
    """Take VMs out of rotation for maintenance (their Envoy fails its health check; requests in
    flight finish) or, with --undo, put them back. Exit 3 when a host is unreachable or not drained."""
    from federation.runtimes import ssh
    from federation.runtimes.vm import VmAgents
    from vmagent.protocol import DrainAnswer
    f = specfiles.load_one(fleet, specs.Fleet)
    if not 0 <= timeout <= 600:
        raise SpecError([Problem("--timeout", "", "must be between 0 and 600 seconds")])
    (z,) = _vm_zones(f, zone)

    async def go() -> list[tuple[str, DrainAnswer | str]]:
        pool = ssh.Pool(retries=0, connect_timeout=5, call_timeout=10)
        try:
            return await VmAgents(z, pool).drain(not undo, host or None, timeout)
        finally:
            await pool.close()

    results = asyncio.run(go())
    rows = [{"host": h, **(r if isinstance(r, dict) else {"error": r})} for h, r in results]
    output.emit(rows, fmt, ["host", "draining", "drained", "in flight", "envoy", "error"],
                [[r["host"], r.get("draining", "-"), r.get("drained", "-"), r.get("active_requests", "-"),
                  r.get("envoy_state") or "-", r.get("error") or r.get("pending") or ""] for r in rows], title="drain")
    if any("error" in r or (not undo and not r.get("drained")) for r in rows):
        raise typer.Exit(3)


@agents.command("status")
def status(fleet: FleetOpt, zone: Annotated[str | None, typer.Option(help="Only this zone.")] = None,
           fmt: Annotated[output.Format, typer.Option("--output", "-o")] = output.Format.table) -> None:
    """Every VM: reachable, agent version, applied revision and step, health; then each zone's
    ingress Envoy and the edge Envoy (admin /ready, route version). Exit 3 when any is down."""
    from federation.runtimes import ssh
    from federation.runtimes.vm import VmAgents
    f = specfiles.load_one(fleet, specs.Fleet)

    async def gather() -> list[dict[str, Any]]:
        pool = ssh.Pool(retries=0, connect_timeout=5, call_timeout=10)
        try:
            rows = []
            for z in _vm_zones(f, zone):
                st = await VmAgents(z, pool).observe()
                for h in st.hosts:
                    rows.append({"zone": z.name, "host": h.target, "reachable": h.reachable,
                                 "agentVersion": h.agent_version, "appliedRevision": h.applied_revision,
                                 "appliedStep": h.applied_step, "health": h.health if h.reachable else "unreachable",
                                 "versions": {k: v.get("ready_percent") for k, v in h.versions.items()},
                                 "error": h.error})
            return rows
        finally:
            await pool.close()

    async def envoys() -> list[dict[str, Any]]:
        from federation.runtimes import envoy_admin
        targets = [(z.name, "ingress", z.ingress.address, z.ingress.admin_port) for z in _vm_zones(f, zone)
                   if z.ingress is not None and z.ingress.admin_port]
        if f.spec.mesh.edge is not None and zone is None:
            targets.append(("mesh", "edge", f.spec.mesh.edge.admin.address, f.spec.mesh.edge.admin.port))
        states = await asyncio.gather(*[envoy_admin.check(a, p) for _, _, a, p in targets])
        return [{"zone": z, "envoy": kind, "admin": f"{a}:{p}", "reachable": st.ok, "detail": st.detail}
                for (z, kind, a, p), st in zip(targets, states, strict=True)]

    rows = asyncio.run(gather())
    envoy_rows = asyncio.run(envoys())
    if fmt is not output.Format.table:  # one list: the hosts, then the Envoys
        output.emit(rows + envoy_rows, fmt)
        if any(not r["reachable"] for r in rows + envoy_rows):
            raise typer.Exit(3)
        return
    output.emit(rows, fmt, ["zone", "host", "reachable", "agent", "applied revision", "step", "health", "ready %", "error"],
                [[r["zone"], r["host"], "yes" if r["reachable"] else "no", r["agentVersion"] or "-",
                  (r["appliedRevision"] or "-")[:12], r["appliedStep"] if r["appliedStep"] is not None else "-",
                  r["health"], " ".join(f"{k}={v:g}" for k, v in r["versions"].items()) or "-", r["error"] or ""]
                 for r in rows], title="agents")
    output.emit(envoy_rows, fmt, ["zone", "envoy", "admin", "ok", "detail"],
                [[e["zone"], e["envoy"], e["admin"], "yes" if e["reachable"] else "NO", e["detail"]] for e in envoy_rows],
                title="envoys")
    if any(not r["reachable"] for r in rows + envoy_rows):
        raise typer.Exit(3)


@agents.command("install")
def install_cmd(fleet: FleetOpt,
                zone: Annotated[str, typer.Option(help="The vm zone whose hosts get the agent.")],
                admin_user: Annotated[str, typer.Option(help="Login with rights to install (not the hub's key).")] = "root",
                admin_key: Annotated[Path | None, typer.Option(help="Private key of that login.")] = None,
                hub_key: Annotated[Path | None, typer.Option(help="Hub public key to authorise (default: the zone's identityFile + .pub).")] = None,
                prefix: Annotated[str, typer.Option(help="Where the agent package goes on the VM.")] = "/opt/fed-agent",
                state_dir: Annotated[str, typer.Option(help="The agent's state directory on the VM.")] = "/var/lib/fed-agent",
                authorized_keys: Annotated[str, typer.Option(help="authorized_keys of the agent user on the VM.")] = "/home/fed-agent/.ssh/authorized_keys",
                python: Annotated[str, typer.Option(help="Python 3.9+ on the VM.")] = "/usr/bin/python3") -> None:
    """Copy the agent over SFTP, authorise the hub's key for the agent only, verify the handshake."""
    from federation.runtimes import install, ssh
    f = specfiles.load_one(fleet, specs.Fleet)
    (z,) = _vm_zones(f, zone)
    assert z.hosts is not None and z.known_hosts is not None
    pub_path = hub_key or (Path(z.identity_file + ".pub") if z.identity_file else None)
    if pub_path is None or not pub_path.is_file():
        raise SpecError([Problem(str(fleet), f"spec.zones[{zone}].identityFile", "no hub public key found; pass --hub-key")])
    pub = pub_path.read_text().strip()
    files = install.package_files(prefix)
    files[f"{prefix}/fed-agent.service"] = install.unit(z, prefix, state_dir, z.hosts[0].user, python).encode()
    cmds = install.commands(z, pub, prefix, state_dir, z.hosts[0].user, authorized_keys, python)

    async def run() -> list[list[str]]:
        rows = []
        pool = ssh.Pool(retries=0)
        try:
            for h in z.hosts or []:
                admin = ssh.Target(h.address, h.port, admin_user, z.known_hosts or "", str(admin_key) if admin_key else None)
                try:
                    results = await ssh.admin_install(admin, files, cmds)
                    failed = [(c, code, out) for c, code, out in results if code != 0]
                    if failed:
                        raise PermanentError(f"{failed[0][0]!r} exited {failed[0][1]}: {failed[0][2].strip()[:200]}")
                    hello = await pool.call(ssh.Target(h.address, h.port, h.user, z.known_hosts or "", z.identity_file), "hello")
                    rows.append([f"{h.user}@{h.address}:{h.port}", "installed", f"protocol {hello.get('protocol')}, "
                                 f"agent {hello.get('agent_version')}"])
                except FederationError as exc:
                    rows.append([f"{h.user}@{h.address}:{h.port}", "failed", str(exc)])
            return rows
        finally:
            await pool.close()

    rows = asyncio.run(run())
    output.emit([{"host": r[0], "result": r[1], "detail": r[2]} for r in rows], output.Format.table,
                ["host", "result", "detail"], rows, title=f"agents install: zone {zone}")
    if any(r[1] != "installed" for r in rows):
        raise typer.Exit(3)


def register(app: typer.Typer) -> None:
    app.add_typer(agents, name="agents")
