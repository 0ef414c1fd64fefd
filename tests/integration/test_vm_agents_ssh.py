"""VM agents over real SSH: the agent's asyncssh endpoint and OpenSSH with a forced command."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest

import vmagent
from federation.core import spec as specs
from federation.core.errors import PermanentError
from federation.demo.fleet import agent_privileges
from federation.demo.procs import Supervisor, wait_for
from federation.runtimes import install
from federation.runtimes.ssh import Pool, Target, admin_install
from federation.runtimes.vm import VmAgents
from tests import fleets
from tests.integration.conftest import free_port
from tests.integration.sshd import keygen, start_sshd

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


def manifests(version: str = "v1", weight: int = 10_000) -> list[dict]:
    return [{"apiVersion": "federation.io/v1alpha1", "kind": "ZoneRelease", "metadata": {"name": "frontend"},
             "spec": {"service": "frontend",
                      "versions": {"v1": {"command": [str(BIN / "fed-demo-app"), "--port", "${PORT}"], "replicas": 1},
                                   "v2": {"command": [str(BIN / "fed-demo-app"), "--port", "${PORT}"], "replicas": 1}},
                      "serving": {version: weight}}}]


class AgentHost:
    """One simulated VM: fed-agent serve on its own port, host key, state dir."""

    def __init__(self, root: Path, procs: Supervisor, hub_pub: str, name: str) -> None:
        self.root, self.procs, self.name = root / name, procs, name
        self.root.mkdir(parents=True)
        self.port = free_port()
        self.host_pub = keygen(self.root / "host_key")
        (self.root / "authorized_keys").write_text(hub_pub + "\n")
        self.proc = None

    def start(self) -> None:
        ready = self.root / "ready"
        ready.unlink(missing_ok=True)
        self.proc = self.procs.start(f"agent-{self.name}", [
            str(BIN / "fed-agent"), "serve", "--state-dir", str(self.root / "state"), "--zone", "z",
            "--listen", f"127.0.0.1:{self.port}", "--host-key", str(self.root / "host_key"),
            "--authorized-keys", str(self.root / "authorized_keys"), "--ports", f"{30000 + self.port % 1000 * 5}-{30004 + self.port % 1000 * 5}",
            "--stop-instances", "--ready-file", str(ready), *agent_privileges(str(BIN))])
        wait_for(lambda: ready.exists(), 20, f"agent {self.name}")

    def kill(self) -> None:
        """SIGKILL the agent only (its app instances live in their own sessions and keep running)."""
        assert self.proc is not None
        self.proc.popen.kill()
        self.proc.popen.wait()
        self.procs.procs.remove(self.proc)

    def known_host(self) -> str:
        kind, key = self.host_pub.split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {key}"

    def instances(self) -> dict:
        try:
            return json.loads((self.root / "state" / "instances.json").read_text())
        except FileNotFoundError:
            return {}

    def stop_instances(self) -> None:
        from vmagent import supervisor

        for r in self.instances().values():
            if supervisor.alive(int(r["pid"])):
                supervisor.stop_group(int(r["pid"]), 2)


@pytest.fixture
def fleet(tmp_path: Path):
    procs = Supervisor(tmp_path / "logs")
    hub_key = tmp_path / "hub_key"
    hub_pub = keygen(hub_key)
    hosts = [AgentHost(tmp_path, procs, hub_pub, f"vm{i}") for i in range(2)]
    try:
        for h in hosts:
            h.start()
        (tmp_path / "known_hosts").write_text("\n".join(h.known_host() for h in hosts) + "\n")
        yield tmp_path, hosts, hub_key
    finally:
        procs.stop_all()
        for h in hosts:
            h.stop_instances()


def zone(tmp: Path, hosts: list[AgentHost], key: Path) -> specs.Zone:
    return specs.Zone.model_validate({
        "name": "vms", "kind": "vm", "git": {"url": "/dev/null"}, "prometheus": {"url": "http://127.0.0.1:1"},
        "ingress": {"address": "127.0.0.1", "port": 1},
        "hosts": [{"address": "127.0.0.1", "port": h.port, "user": "hub"} for h in hosts],
        "knownHosts": str(tmp / "known_hosts"), "identityFile": str(key)})


async def until_applied(z: VmAgents, step: int, timeout: float = 90.0, version: str | None = None):
    """Poll until every host applied ``step`` (and, given ``version``, it is ready everywhere)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        st = await z.observe()
        if st.applied_step() == step and (version is None or st.ready_percent("frontend", version) == 100.0):
            return st
        assert asyncio.get_running_loop().time() < deadline, [(h.target, h.applied_step, h.error) for h in st.hosts]
        await asyncio.sleep(0.1)


def test_apply_status_drift_and_agent_restart(fleet):
    tmp, hosts, key = fleet

    async def scenario() -> None:
        pool = Pool(call_timeout=5)
        z = VmAgents(zone(tmp, hosts, key), pool)
        try:
            hello = await z.hello()
            assert all(isinstance(r, dict) and r["protocol"] == 1 for _, r in hello)
            await z.apply("rev1", 1, manifests("v1"))
            await until_applied(z, 1, version="v1")
            # Drift: kill the app instance behind the agent's back; it comes back with a new pid.
            pid = int(next(iter(hosts[0].instances().values()))["pid"])
            os.kill(pid, 9)
            wait_for(lambda: int(next(iter(hosts[0].instances().values()))["pid"]) != pid, 20, "restart of killed app")
            await until_applied(z, 1, version="v1")
            assert next(iter(hosts[0].instances().values()))["restarts"] == 1
            # Agent restart: SIGKILL it; the new agent adopts the running instance from its state dir.
            before = {k: r["pid"] for k, r in hosts[1].instances().items()}
            hosts[1].kill()
            hosts[1].start()
            await until_applied(z, 1)
            assert {k: r["pid"] for k, r in hosts[1].instances().items()} == before
            # A late retry of an older step is refused by the agent.
            resp = await pool.call(z.targets[0], "apply", desired={"revision": "old", "step": 0, "manifests": []})
            assert resp["ok"] and not resp["accepted"] and "older" in resp["reason"]
        finally:
            await pool.close()

    asyncio.run(scenario())


def test_changed_host_key_is_refused(fleet, tmp_path: Path):
    _tmp, hosts, key = fleet
    other = keygen(tmp_path / "impostor").split()
    bad = tmp_path / "bad_known_hosts"
    bad.write_text(f"[127.0.0.1]:{hosts[0].port} {other[0]} {other[1]}\n")
    t = Target("127.0.0.1", hosts[0].port, "hub", str(bad), str(key))
    unknown = Target("127.0.0.1", hosts[0].port, "hub", str(tmp_path / "empty_known_hosts"), str(key))
    (tmp_path / "empty_known_hosts").write_text("")

    async def call(target: Target) -> None:
        pool = Pool(retries=0)
        try:
            await pool.call(target, "hello")
        finally:
            await pool.close()

    with pytest.raises(PermanentError, match="host key not accepted"):
        asyncio.run(call(t))
    with pytest.raises(PermanentError, match="host key not accepted"):
        asyncio.run(call(unknown))


def test_unreachable_vm_blocks_the_step_and_converges_when_back(fleet):
    tmp, hosts, key = fleet

    async def scenario() -> None:
        pool = Pool(call_timeout=3, connect_timeout=2, retries=0)
        z = VmAgents(zone(tmp, hosts, key), pool)
        try:
            await z.apply("rev1", 1, manifests("v1"))
            await until_applied(z, 1)
            await z.apply("rev2", 2, manifests("v2"))
            await until_applied(z, 2)
            hosts[1].kill()
            # Rollback while vm1 is down: the step is not counted (zone applied step unknown).
            await z.apply("rev3", 3, manifests("v1"))
            st = await z.observe()
            assert st.applied_step() is None
            down = next(h for h in st.hosts if not h.reachable)
            assert str(hosts[1].port) in down.target and "cannot connect" in down.error
            up_host = next(h for h in st.hosts if h.reachable)
            assert up_host.applied_step in (2, 3)
            hosts[1].start()
            st = await until_applied(z, 3)  # observe() re-sent the desired state to the returning VM
            assert all(h.applied_revision == "rev3" for h in st.hosts)
            assert {r["version"] for r in hosts[1].instances().values()} == {"v1"}
        finally:
            await pool.close()

    asyncio.run(scenario())


@pytest.fixture
def sshd(tmp_path: Path):
    """A real OpenSSH sshd on loopback: root may only run the forced command (fed-agent rpc)."""
    procs = Supervisor(tmp_path / "logs")
    hub_pub = keygen(tmp_path / "hub_key")
    state = tmp_path / "state"
    try:
        port = start_sshd(tmp_path, procs, f'command="{BIN / "fed-agent"} rpc --state-dir {state}",restrict {hub_pub}\n')
        procs.start("agent-loop", [str(BIN / "fed-agent"), "run", "--zone", "vms", "--state-dir", str(state),
                                   "--ports", "31500-31510", "--stop-instances", *agent_privileges(str(BIN))])
        yield tmp_path, port
    finally:
        procs.stop_all()


def ssh(tmp: Path, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ssh", "-i", str(tmp / "hub_key"), "-p", str(port), "-o", "BatchMode=yes",
                           "-o", f"UserKnownHostsFile={tmp / 'known_hosts'}", "-o", "StrictHostKeyChecking=yes",
                           "-o", "ConnectTimeout=5", *args], capture_output=True, text=True, timeout=30)


def test_openssh_forced_command_serves_the_protocol_and_nothing_else(sshd):
    tmp, port = sshd
    target = Target("127.0.0.1", port, "root", str(tmp / "known_hosts"), str(tmp / "hub_key"))

    async def scenario() -> dict:
        pool = Pool(call_timeout=10)
        try:
            hello = await pool.call(target, "hello")
            assert hello["ok"] and hello["protocol"] == 1
            resp = await pool.call(target, "apply", desired={"revision": "r1", "step": 1, "manifests": manifests("v1")})
            assert resp["ok"] and resp["accepted"]
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                st = await pool.call(target, "status")
                if st.get("applied_step") == 1:
                    return st
                assert asyncio.get_running_loop().time() < deadline, st
                await asyncio.sleep(0.2)
        finally:
            await pool.close()

    st = asyncio.run(scenario())
    assert st["versions"]["frontend/v1"]["ready_percent"] == 100.0
    # The hub's key cannot run a shell: whatever it asks for, the forced command answers instead.
    r = ssh(tmp, port, "root@127.0.0.1", "echo pwned; id")
    assert "pwned" not in r.stdout and "uid=" not in r.stdout
    assert json.loads(r.stdout)["ok"] is False and "not JSON" in json.loads(r.stdout)["error"]
    # No interactive shell either (no PTY under restrict, and the forced command reads the protocol).
    r = ssh(tmp, port, "-tt", "root@127.0.0.1")
    assert "PTY allocation request failed" in r.stderr or r.returncode != 0 or "#" not in r.stdout
    # And no port forwarding.
    r = ssh(tmp, port, "-W", f"127.0.0.1:{port}", "root@127.0.0.1")
    assert r.returncode != 0 and "prohibited" in r.stderr, r.stderr


def test_fedctl_agents_install_then_status_over_openssh(tmp_path: Path):
    """Install with an operator key over SFTP; afterwards the hub's key reaches only the agent."""
    procs = Supervisor(tmp_path / "logs")
    admin_pub = keygen(tmp_path / "admin_key")
    keygen(tmp_path / "hub_key")
    auth = tmp_path / "authorized_keys"
    port = start_sshd(tmp_path, procs, admin_pub + "\n", root_login="prohibit-password", sftp=True)
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(json.dumps(fleets.fleet_doc([fleets.vm_zone(
        "vms", hosts=[{"address": "127.0.0.1", "port": port, "user": "root"}],
        knownHosts=str(tmp_path / "known_hosts"), identityFile=str(tmp_path / "hub_key"))])))
    fedctl = [sys.executable, "-m", "federation.cli.main"]
    try:
        r = subprocess.run([*fedctl, "agents", "install", "--fleet", str(fleet_file), "--zone", "vms",
                            "--admin-key", str(tmp_path / "admin_key"), "--prefix", str(tmp_path / "opt"),
                            "--state-dir", str(tmp_path / "state"), "--authorized-keys", str(auth)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "installed" in r.stdout and "protocol 1" in r.stdout
        shipped = (tmp_path / "opt" / "fed-agent.pyz").read_bytes()
        assert install.Agent.of(shipped).sha256 == install.zipapp().sha256  # one file, the agent fedctl has
        assert not list((tmp_path / "opt").glob(".fed-agent.pyz.*"))  # the upload was renamed into place
        assert 'restrict' in auth.read_text() and "fed-agent.pyz rpc" in auth.read_text()
        # Idempotent: a second install adds no second key line.
        r2 = subprocess.run([*fedctl, "agents", "install", "--fleet", str(fleet_file), "--zone", "vms",
                             "--admin-key", str(tmp_path / "admin_key"), "--prefix", str(tmp_path / "opt"),
                             "--state-dir", str(tmp_path / "state"), "--authorized-keys", str(auth)],
                            capture_output=True, text=True, timeout=120)
        assert r2.returncode == 0 and auth.read_text().count("fed-agent.pyz rpc") == 1
        st = subprocess.run([*fedctl, "agents", "status", "--fleet", str(fleet_file), "-o", "json"],
                            capture_output=True, text=True, timeout=60)
        assert st.returncode == 0, st.stderr
        rows = json.loads(st.stdout)
        assert rows[0]["reachable"] is True and rows[0]["zone"] == "vms"
        # A host key that changed is refused by install as well.
        (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{port} {keygen(tmp_path / 'other').split()[0]} "
                                              f"{(tmp_path / 'other.pub').read_text().split()[1]}\n")
        r3 = subprocess.run([*fedctl, "agents", "install", "--fleet", str(fleet_file), "--zone", "vms",
                             "--admin-key", str(tmp_path / "admin_key")], capture_output=True, text=True, timeout=60)
        assert r3.returncode == 3 and "host key not accepted" in r3.stdout + r3.stderr
    finally:
        procs.stop_all()


def with_version(pyz: bytes, version: str) -> bytes:
    """The same zipapp with another agent version: what a newer fedctl would ship."""
    src, out = zipfile.ZipFile(io.BytesIO(pyz)), io.BytesIO()
    out.write(pyz[:pyz.index(b"PK")])  # the shebang line
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "vmagent/__init__.py":
                data = re.sub(rb'__version__ = "[^"]*"', f'__version__ = "{version}"'.encode(), data)
            z.writestr(info, data)
    return out.getvalue()


def test_agent_ships_as_one_file_and_upgrades_without_dropping_instances(tmp_path: Path):
    """Over real OpenSSH: install the zipapp, run an app instance through it, upgrade to a newer
    file (checksum verified on the VM), restart the loop as systemd does (KillMode=process): the
    instance keeps its pid and keeps answering, and the hub now talks to the new agent. A file
    whose checksum does not match is refused and leaves the installed one in place."""
    procs = Supervisor(tmp_path / "logs")
    admin_pub = keygen(tmp_path / "admin_key")
    keygen(tmp_path / "hub_key")
    auth, opt, state = tmp_path / "authorized_keys", tmp_path / "opt", tmp_path / "state"
    port = start_sshd(tmp_path, procs, admin_pub + "\n", root_login="prohibit-password", sftp=True)
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(json.dumps(fleets.fleet_doc([fleets.vm_zone(
        "vms", hosts=[{"address": "127.0.0.1", "port": port, "user": "root"}],
        knownHosts=str(tmp_path / "known_hosts"), identityFile=str(tmp_path / "hub_key"))])))
    fedctl = [sys.executable, "-m", "federation.cli.main"]
    base = [*fedctl, "agents", "install", "--fleet", str(fleet_file), "--zone", "vms", "--admin-key",
            str(tmp_path / "admin_key"), "--prefix", str(opt), "--state-dir", str(state), "--authorized-keys", str(auth),
            "--python", sys.executable]
    newer = tmp_path / "newer.pyz"
    newer.write_bytes(with_version(install.zipapp().data, "9.9.9"))
    loop_argv = [sys.executable, str(opt / "fed-agent.pyz"), "run", "--zone", "vms", "--state-dir", str(state),
                 "--ports", "31520-31530", "--runner", "process", *agent_privileges(str(BIN))]
    hub = Target("127.0.0.1", port, "root", str(tmp_path / "known_hosts"), str(tmp_path / "hub_key"))

    def instances() -> dict:
        try:
            return json.loads((state / "instances.json").read_text())
        except FileNotFoundError:
            return {}

    async def status_when(pred, timeout: float = 120.0) -> dict:  # generous: the agent loop starts on a loaded machine
        pool = Pool(call_timeout=10)
        try:
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                st = await pool.call(hub, "status")
                if pred(st):
                    return st
                assert asyncio.get_running_loop().time() < deadline, st
                await asyncio.sleep(0.2)
        finally:
            await pool.close()

    async def apply() -> dict:
        pool = Pool(call_timeout=10)
        try:
            return await pool.call(hub, "apply", desired={"revision": "r1", "step": 1, "manifests": manifests("v1")})
        finally:
            await pool.close()

    try:
        t0 = time.monotonic()
        r = subprocess.run(base, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "installed" in r.stdout, r.stdout + r.stderr
        print(f"agent install over OpenSSH, one host: {time.monotonic() - t0:.2f}s")
        loop = procs.start("agent-loop", loop_argv)  # what systemd runs (the unit's ExecStart)
        assert asyncio.run(apply())["accepted"]
        st = asyncio.run(status_when(lambda s: s.get("applied_step") == 1
                                     and s["versions"].get("frontend/v1", {}).get("ready_percent") == 100.0))
        assert st["agent_version"] == vmagent.__version__
        (before,) = instances().values()
        app_url = f"http://127.0.0.1:{before['port']}/healthz"
        assert httpx.get(app_url, timeout=5).status_code == 200

        t0 = time.monotonic()
        up = subprocess.run([*base, "--upgrade", "--agent-file", str(newer)], capture_output=True, text=True, timeout=120)
        assert up.returncode == 0 and "upgraded" in up.stdout, up.stdout + up.stderr
        assert "agent 9.9.9" in up.stdout  # the handshake already runs the new file (the forced command)
        print(f"agent upgrade over OpenSSH, one host: {time.monotonic() - t0:.2f}s")
        assert (opt / "fed-agent.pyz").read_bytes() == newer.read_bytes()
        assert auth.read_text().count("fed-agent.pyz rpc") == 1
        # systemd's restart with KillMode=process: the agent process only.
        procs.stop(loop)
        assert httpx.get(app_url, timeout=5).status_code == 200  # served while no agent runs
        procs.start("agent-loop-new", loop_argv)
        st = asyncio.run(status_when(lambda s: s.get("agent_version") == "9.9.9" and s.get("applied_step") == 1
                                     and s["versions"].get("frontend/v1", {}).get("ready_percent") == 100.0))
        (after,) = instances().values()
        assert after["pid"] == before["pid"] and after.get("restarts", 0) == before.get("restarts", 0)
        assert httpx.get(app_url, timeout=5).status_code == 200

        # A corrupted upload: the checksum check on the VM refuses it, the installed file stays.
        good = install.Agent.of(newer.read_bytes())
        uploaded = install.upload_path(str(opt))
        admin = Target("127.0.0.1", port, "root", str(tmp_path / "known_hosts"), str(tmp_path / "admin_key"))
        cmds = install.commands((tmp_path / "hub_key.pub").read_text(), str(opt), str(state), str(auth), good,
                                uploaded, sys.executable)
        results = asyncio.run(admin_install(admin, {uploaded: good.data[:-1] + b"x"}, cmds))
        assert results[-1][1] != 0 and "checksum mismatch" in results[-1][2], results
        assert len(results) == 2  # nothing after the failed check ran
        assert (opt / "fed-agent.pyz").read_bytes() == newer.read_bytes()
        assert not list(opt.glob(".fed-agent.pyz.*"))
    finally:
        procs.stop_all()
        from vmagent import supervisor

        for rec in instances().values():
            if supervisor.alive(int(rec["pid"])):
                supervisor.stop_group(int(rec["pid"]), 2)
