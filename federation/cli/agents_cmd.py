"""``fedctl agents status|drain|install|package``: the VM agents of a fleet's vm zones."""

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
                prefix: Annotated[str, typer.Option(help="Where the agent's file (fed-agent.pyz) and unit go on the VM.")] = "/opt/fed-agent",
                state_dir: Annotated[str, typer.Option(help="The agent's state directory on the VM.")] = "/var/lib/fed-agent",
                authorized_keys: Annotated[str, typer.Option(help="authorized_keys of the agent user on the VM.")] = "/home/fed-agent/.ssh/authorized_keys",
                python: Annotated[str, typer.Option(help="Python 3.9+ on the VM.")] = "/usr/bin/python3",
                upgrade: Annotated[bool, typer.Option("--upgrade", help="Replace the agent's file and restart its loop; "
                                                      "the app instances it runs keep serving.")] = False,
                agent_file: Annotated[Path | None, typer.Option(help="Ship this fed-agent.pyz (default: built from the "
                                                                "agent installed with fedctl).")] = None,
                parallel: Annotated[int, typer.Option(min=1, max=200, help="Hosts installed at once.")] = 10) -> None:
    """Ship the agent as one file over SFTP (its SHA-256 verified on the VM before it replaces the
    old one), authorise the hub's key for the agent only, start it, verify the handshake."""
    from federation.runtimes import install, ssh
    f = specfiles.load_one(fleet, specs.Fleet)
    (z,) = _vm_zones(f, zone)
    assert z.hosts is not None and z.known_hosts is not None
    pub_path = hub_key or (Path(z.identity_file + ".pub") if z.identity_file else None)
    if pub_path is None or not pub_path.is_file():
        raise SpecError([Problem(str(fleet), f"spec.zones[{zone}].identityFile", "no hub public key found; pass --hub-key")])
    pub = pub_path.read_text().strip()
    if agent_file is not None:
        try:
            agent = install.Agent.of(agent_file.read_bytes())
        except OSError as exc:
            raise SpecError([Problem(str(agent_file), "", f"cannot read the agent file: {exc.strerror}")]) from None
    else:
        agent = install.zipapp()
    unit = install.unit(z.name, prefix, state_dir, z.hosts[0].user, python).encode()
    sem = asyncio.Semaphore(parallel)

    async def one(h: specs.Host, pool: ssh.Pool) -> list[str]:
        where = f"{h.user}@{h.address}:{h.port}"
        uploaded = install.upload_path(prefix)
        files = {uploaded: agent.data, f"{prefix}/{install.UNIT_FILE}": unit}
        cmds = install.commands(pub, prefix, state_dir, authorized_keys,
                                agent, uploaded, python, upgrade=upgrade)
        admin = ssh.Target(h.address, h.port, admin_user, z.known_hosts or "", str(admin_key) if admin_key else None)
        async with sem:
            try:
                results = await ssh.admin_install(admin, files, cmds)
                failed = [(c, code, out) for c, code, out in results if code != 0]
                if failed:
                    cmd, code, out = failed[0]
                    raise PermanentError(f"{cmd[:80]!r} exited {code}: {out.strip()[:300]}")
                hello = await pool.call(ssh.Target(h.address, h.port, h.user, z.known_hosts or "", z.identity_file), "hello")
                return [where, "upgraded" if upgrade else "installed",
                        f"protocol {hello.get('protocol')}, agent {hello.get('agent_version')}, sha256 {agent.sha256[:16]}"]
            except FederationError as exc:
                return [where, "failed", str(exc)]

    async def run() -> list[list[str]]:
        # The handshake is idempotent: retried (with backoff) so a loaded VM or network does not
        # turn a good install into a failure.
        pool = ssh.Pool(retries=2, call_timeout=20)
        try:
            return list(await asyncio.gather(*[one(h, pool) for h in z.hosts or []]))
        finally:
            await pool.close()

    rows = asyncio.run(run())
    output.emit([{"host": r[0], "result": r[1], "detail": r[2]} for r in rows], output.Format.table,
                ["host", "result", "detail"], rows, title=f"agents install: zone {zone}")
    if any(r[1] == "failed" for r in rows):
        raise typer.Exit(3)


@agents.command("package")
def package_cmd(out: Annotated[Path, typer.Option("--output", "-o", help="Directory to write into.")] = Path("."),
                prefix: Annotated[str, typer.Option(help="Where the file will live on the VM (for the unit).")] = "/opt/fed-agent",
                python: Annotated[str, typer.Option(help="Python 3.9+ on the VM (for the unit).")] = "/usr/bin/python3") -> None:
    """Write the agent as one file (fed-agent.pyz), its SHA256SUMS and its systemd unit, for hosts
    installed by other means (configuration management, an image). Same agent, same bytes."""
    from federation.runtimes import install
    agent = install.zipapp()
    out.mkdir(parents=True, exist_ok=True)
    (out / install.AGENT_FILE).write_bytes(agent.data)
    (out / install.AGENT_FILE).chmod(0o755)
    (out / "SHA256SUMS").write_text(f"{agent.sha256}  {install.AGENT_FILE}\n")
    (out / install.UNIT_FILE).write_text(install.unit("%H", prefix, "/var/lib/fed-agent", "fed-agent", python))
    output.info(f"{out / install.AGENT_FILE}: {len(agent.data)} bytes, sha256 {agent.sha256}")


def register(app: typer.Typer) -> None:
    app.add_typer(agents, name="agents")
