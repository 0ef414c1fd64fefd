"""The local fleet: three zones simulated on this machine, with the real parts.

Per zone: a bare Git repo seeded from ``clusters/<zone>``, a ``fed-agent serve`` (asyncssh endpoint,
pinned host key, only the hub's key authorised) that runs the app versions and drives the zone's
ingress Envoy by file-based xDS, and a Prometheus scraping that Envoy and the apps. One edge
Envoy splits traffic across the zone ingresses. Zones ``eks`` and ``onprem`` stand in for Kubernetes
clusters and ``vms`` for legacy VMs: here all three run their instances as local processes.
Callers: ``demo.run``, e2e tests.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from federation import specfiles
from federation.core import spec as specs
from federation.core.errors import FederationError
from federation.demo.procs import Proc, Supervisor, wait_for
from federation.gitops import repo as gitrepo
from vmagent import envoy as zone_envoy

log = logging.getLogger("federation.demo")

ZONES = (("eks", 2, "cloud cluster (EKS), simulated locally"),
         ("onprem", 1, "on-prem Kubernetes cluster, simulated locally"),
         ("vms", 1, "legacy VMs, simulated locally"))
SERVICE = "frontend"


def free_port() -> int:
    """A port free now. Nothing holds it until a child binds it, so another process may take it in
    between: ``LocalFleet.start`` starts a child again on fresh ports when it could not bind."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


ADDRESS_IN_USE = "address already in use"  # how Envoy, Prometheus and fed-agent (errno 98) say it
PORT_ATTEMPTS = 5


@dataclass
class _Part:
    """A listening process of the fleet: how to start it, when it is up, and how to choose its
    ports again when another process took one of them before it could bind."""
    name: str
    launch: Callable[[], Proc]
    up: Callable[[], bool]
    repick: Callable[[], None]


APP_PORTS = 100  # per zone: the ports its agent gives its app instances (round the range)
APP_PORT_RANGE = (20000, 32000)  # below Linux's ephemeral ports (32768-60999): nothing else is given these


def reserve_app_ports(count: int) -> tuple[int, int]:
    """A block of ``count`` app ports no other local fleet holds (several run at once: a test suite
    beside the chaos soak, two demos): an exclusive ``flock`` on a lock file per block, held by the
    returned file until it is closed or this process ends, and every port of the block free now (a
    fleet kept running by ``fedctl demo --keep`` holds no lock). The lock's descriptor and the block's
    first port."""
    lock_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"federation-app-ports-{os.getuid()}"
    lock_dir.mkdir(mode=0o700, exist_ok=True)
    for base in range(APP_PORT_RANGE[0], APP_PORT_RANGE[1] - count + 1, count):
        fd = os.open(lock_dir / f"{base}.lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        if all(_bindable(port) for port in range(base, base + count)):
            return fd, base
        os.close(fd)
    raise FederationError(f"no free block of {count} app ports in {APP_PORT_RANGE[0]}-{APP_PORT_RANGE[1]} "
                          f"(other local fleets hold them all; see {lock_dir})")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def tool(name: str) -> str:
    """A program from this venv first (envoy, fed-agent), then PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise FederationError(f"{name} not found: run `make install` (it installs every part the demo uses)")
    return found


# A VM's (zone ingress') readiness for load balancers in front of it: 200 while live, 503 once the
# agent drains the VM (Envoy /healthcheck/fail). Requests still arriving are served.
READY_PATH = "/federation/ready"
HEALTH_FILTER = {
    "name": "envoy.filters.http.health_check",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck",
                     "pass_through_mode": False, "headers": [{"name": ":path", "string_match": {"exact": READY_PATH}}]},
}


@dataclass
class ZoneProcs:
    name: str
    capacity: int
    description: str
    ssh_port: int = field(default_factory=free_port)
    ingress_port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    prom_port: int = field(default_factory=free_port)
    app_ports: tuple[int, int] = (0, 0)
    # Ingress listeners of services other than the first (one listener per service: Envoy takes one
    # RouteConfiguration per RDS file, and the agent writes ``rds-<service>.json`` for each).
    extra_ports: dict[str, int] = field(default_factory=dict)

    def service_port(self, service: str, services: tuple[str, ...]) -> int:
        return self.ingress_port if service == services[0] else self.extra_ports[service]



def agent_privileges(bin_dir: str) -> list[str]:
    """The agent flags of a local fleet: apps may run only from this venv's bin directory, as the
    user running the demo (root only when the demo itself runs as root, as in a container)."""
    return ["--allow-commands", bin_dir, "--app-user", getpass.getuser(),
            *(["--allow-root-apps"] if os.geteuid() == 0 else [])]


class LocalFleet:
    def __init__(self, workdir: Path, clusters: Path | None = None, scrape_interval: str = "1s",
                 services: tuple[str, ...] = (SERVICE,)) -> None:
        """``services``: the services the Envoys carry, one listener each (the first on the ports
        ``fleet.yaml`` names). The edge's zone clusters point at the first service's listeners, so
        through the edge only the first service reaches its instances; the others are reached at
        their zone ingress listeners (``service_url``) and their edge routes are applied all the same."""
        self.workdir = Path(workdir).resolve()
        self.services = services
        self.clusters = clusters or repo_root() / "clusters"
        self.scrape_interval = scrape_interval
        self.sup = Supervisor(self.workdir / "logs")
        self.zones = [ZoneProcs(n, c, d) for n, c, d in ZONES]
        lock, base = reserve_app_ports(len(self.zones) * APP_PORTS)
        self._release_ports = weakref.finalize(self, os.close, lock)  # at stop, or when this fleet is gone
        for i, z in enumerate(self.zones):
            z.app_ports = (base + i * APP_PORTS, base + (i + 1) * APP_PORTS - 1)
        for z in self.zones:
            z.extra_ports = {s: free_port() for s in services[1:]}
        self.edge_port = free_port()
        self.edge_admin = free_port()
        self.edge_extra = {s: free_port() for s in services[1:]}
        self.agents: dict[str, Proc] = {}
        # Zones that run as Kubernetes zones (``demo.kubezones``): no fed-agent; their ingress Envoy
        # and Prometheus as in every zone. ``fleet.yaml`` names them ``kind: kubernetes`` once
        # ``kubeconfig`` (the hub's, on the local API server) is set.
        self.kube_zones: tuple[str, ...] = ()
        self.kubeconfig: Path | None = None

    # -- layout ----------------------------------------------------------------------------

    def zdir(self, zone: str) -> Path:
        return self.workdir / "zones" / zone

    @property
    def fleet_file(self) -> Path:
        return self.workdir / "fleet.yaml"

    @property
    def edge_url(self) -> str:
        return f"http://127.0.0.1:{self.edge_port}/"

    def git_url(self, name: str) -> str:
        return str(self.workdir / "git" / f"{name}.git")

    def service_url(self, zone: str, service: str) -> str:
        z = next(x for x in self.zones if x.name == zone)
        return f"http://127.0.0.1:{z.service_port(service, self.services)}/"

    def edge_rds(self, service: str) -> Path:
        return self.workdir / "edge" / ("rds.json" if len(self.services) == 1 else f"rds-{service}.json")

    def prometheus_url(self, zone: str) -> str:
        z = next(x for x in self.zones if x.name == zone)
        return f"http://127.0.0.1:{z.prom_port}"

    # -- build -----------------------------------------------------------------------------

    def _keys(self) -> None:
        ssh_dir = self.workdir / "ssh"
        ssh_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(ssh_dir, 0o700)
        hub_key = ssh_dir / "hub_ed25519"
        _keygen(hub_key, "federation-hub")
        for z in self.zones:
            hk = self.zdir(z.name) / "ssh_host_ed25519_key"
            hk.parent.mkdir(parents=True, exist_ok=True)
            _keygen(hk, f"fed-agent@{z.name}")
            (self.zdir(z.name) / "authorized_keys").write_text(Path(str(hub_key) + ".pub").read_text())
        self._known_hosts()

    def _known_hosts(self) -> None:
        lines = []
        for z in self.zones:
            pub = (self.zdir(z.name) / "ssh_host_ed25519_key.pub").read_text().split()
            lines.append(f"[127.0.0.1]:{z.ssh_port} {pub[0]} {pub[1]}")
        (self.workdir / "ssh" / "known_hosts").write_text("\n".join(lines) + "\n")

    def _repos(self) -> None:
        for z in self.zones:
            gitrepo.init_bare_seeded(Path(self.git_url(z.name)), self.clusters / z.name,
                                     message=f"{z.name}: seed from clusters/{z.name}")
        gitrepo.init_bare_seeded(Path(self.git_url("mesh")), self.clusters / "mesh", message="mesh: seed")

    def fleet_doc(self) -> dict[str, Any]:
        ssh_dir = self.workdir / "ssh"
        zones = []
        for z in self.zones:
            zones.append({
                "name": z.name, "kind": "vm", "description": z.description, "capacity": z.capacity,
                "git": {"url": self.git_url(z.name), "branch": "main", "path": "."},
                "prometheus": {"url": self.prometheus_url(z.name), "timeout": "3s"},
                "ingress": {"address": "127.0.0.1", "port": z.ingress_port, "adminPort": z.admin_port},
                "hosts": [{"address": "127.0.0.1", "port": z.ssh_port, "user": "fed-agent"}],
                "knownHosts": str(ssh_dir / "known_hosts"),
                "identityFile": str(ssh_dir / "hub_ed25519"),
                "labels": {"simulates": "kubernetes" if z.name != "vms" else "vm"},
            })
        if self.kubeconfig is not None:
            from federation.demo import kubezones

            zones = [kubezones.fleet_zone(z, self.kubeconfig) if z["name"] in self.kube_zones else z for z in zones]
        return {
            "apiVersion": specs.API_VERSION, "kind": "Fleet", "metadata": {"name": "local-demo"},
            "spec": {"zones": zones, "mesh": {
                "provider": "envoy",
                "git": {"url": self.git_url("mesh"), "branch": "main", "path": "."},
                "edge": {"rdsPath": str(self.workdir / "edge" / ("rds.json" if len(self.services) == 1
                                                                else "rds-{service}.json")),
                         "admin": {"address": "127.0.0.1", "port": self.edge_admin},
                         "listener": {"address": "127.0.0.1", "port": self.edge_port}},
            },
                # Everything of the demo runs on loopback; its Envoys' admin ports stay refused.
                "outbound": {"allow": ["127.0.0.0/8"]}},
        }

    def _envoy_bootstrap(self, name: str, admin: int, listeners: list[tuple[int, str, Path]], stat_prefix: str,
                         cds: Path | None, static_clusters: list[dict[str, Any]]) -> Path:
        """``listeners``: (port, route name, RDS file) of each service."""
        boot: dict[str, Any] = {
            "node": {"id": name, "cluster": name},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
            "static_resources": {
                "listeners": [{
                    "name": "ingress" if i == 0 else f"ingress-{route}",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": listener}},
                    "filter_chains": [{"filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": stat_prefix,
                            "rds": {"route_config_name": route, "config_source": {
                                "resource_api_version": "V3", "path_config_source": {"path": str(rds)}}},
                            "http_filters": [*([HEALTH_FILTER] if cds is not None else []),
                                             {"name": "envoy.filters.http.router", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
                        },
                    }]}],
                } for i, (listener, route, rds) in enumerate(listeners)],
                "clusters": static_clusters,
            },
        }
        if cds is not None:
            boot["dynamic_resources"] = {"cds_config": {"resource_api_version": "V3",
                                                        "path_config_source": {"path": str(cds)}}}
        path = listeners[0][2].parent / "bootstrap.json"
        path.write_text(json.dumps(boot, indent=1))
        return path

    def _edge_config(self) -> Path:
        edge = self.workdir / "edge"
        edge.mkdir(parents=True, exist_ok=True)
        clusters = [{
            "name": f"zone-{z.name}", "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": f"zone-{z.name}", "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": z.ingress_port}}}}]}]},
        } for z in self.zones]
        listeners = []
        for i, service in enumerate(self.services):
            rds = self.edge_rds(service)
            # Until the hub's first step, the edge sends everything where the seeds run the service (vms).
            seed = {"version_info": "seed", "resources": [{
                "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", "name": service,
                "validate_clusters": True, "virtual_hosts": [{"name": service, "domains": ["*"], "routes": [
                    {"match": {"prefix": "/"}, "route": {"cluster": "zone-vms"}}]}]}]}
            rds.write_text(json.dumps(seed, indent=1))
            listeners.append((self.edge_port if i == 0 else self.edge_extra[service], service, rds))
        return self._envoy_bootstrap("edge", self.edge_admin, listeners, "edge", None, clusters)

    def _zone_config(self, z: ZoneProcs) -> Path:
        envoy_dir = self.zdir(z.name) / "envoy"
        envoy_dir.mkdir(parents=True, exist_ok=True)
        cds = envoy_dir / "cds.json"
        cds.write_text(json.dumps({"version_info": "empty", "resources": []}))
        listeners = []
        for service in self.services:
            rds = Path(zone_envoy.route_path(str(envoy_dir), service))
            rds.write_text(json.dumps({"version_info": "empty", "resources": [{
                "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", "name": service,
                "validate_clusters": True, "virtual_hosts": [{"name": service, "domains": ["*"], "routes": [
                    {"match": {"prefix": "/"}, "direct_response": {"status": 503}}]}]}]}))
            listeners.append((z.service_port(service, self.services), service, rds))
        return self._envoy_bootstrap(f"ingress-{z.name}", z.admin_port, listeners, "ingress", cds, [])

    def _prometheus_config(self, z: ZoneProcs) -> Path:
        pdir = self.zdir(z.name) / "prometheus"
        (pdir / "data").mkdir(parents=True, exist_ok=True)
        targets = pdir / "targets.json"
        if not targets.exists():
            targets.write_text("[]")
        cfg = {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval,
                       "external_labels": {"zone": z.name}},
            "scrape_configs": [
                {"job_name": "zone-ingress", "metrics_path": "/stats/prometheus",
                 "static_configs": [{"targets": [f"127.0.0.1:{z.admin_port}"], "labels": {"zone": z.name}}]},
                {"job_name": "apps", "file_sd_configs": [{"files": [str(targets)], "refresh_interval": "1s"}]},
            ],
        }
        path = pdir / "prometheus.yml"
        path.write_text(specfiles.dump([cfg]))
        return path

    # -- run -------------------------------------------------------------------------------

    def prepare(self) -> None:
        if self.workdir.exists() and any(self.workdir.iterdir()):
            raise FederationError(f"{self.workdir} is not empty: remove it or pass another --workdir")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._keys()
        self._repos()
        self.fleet_file.write_text(specfiles.dump([self.fleet_doc()]))

    def start(self, only: Collection[str] | None = None) -> None:
        """Start every zone's parts (or those of the zones in ``only``) and the edge.

        Ports are chosen before the children bind them, so one may be taken in between (another
        test, an outgoing connection): a child that exits because its address is in use is started
        again on fresh ports, before anything that points at those ports is configured (zone
        Envoys first; then Prometheus, the agents and the edge). ``fleet.yaml`` and
        ``known_hosts`` are written again at the end with the ports in use."""
        agent = tool("fed-agent")
        bin_dir = str(Path(sys.executable).parent)
        path_env = {"PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
        zones = [z for z in self.zones if only is None or z.name in only]
        self._bring_up([self._ingress_part(z) for z in zones])

        def prometheus(z: ZoneProcs) -> _Part:
            def launch() -> Proc:
                cfg = self._prometheus_config(z)
                return self.sup.start(f"prometheus-{z.name}", [
                    tool("prometheus"), f"--config.file={cfg}", f"--storage.tsdb.path={cfg.parent / 'data'}",
                    f"--web.listen-address=127.0.0.1:{z.prom_port}", "--storage.tsdb.retention.time=1h",
                    "--log.level=warn"])

            def repick() -> None:
                z.prom_port = free_port()
            return _Part(f"prometheus-{z.name}", launch, lambda: _http_ok(f"http://127.0.0.1:{z.prom_port}/-/ready"),
                         repick)

        def fed_agent(z: ZoneProcs) -> _Part:
            zd = self.zdir(z.name)
            ready = zd / "agent.ready"

            def launch() -> Proc:
                ready.unlink(missing_ok=True)
                self.agents[z.name] = self.sup.start(f"agent-{z.name}", [
                    agent, "serve", "--state-dir", str(zd / "agent"), "--zone", z.name,
                    "--listen", f"127.0.0.1:{z.ssh_port}", "--host-key", str(zd / "ssh_host_ed25519_key"),
                    "--authorized-keys", str(zd / "authorized_keys"), "--envoy-admin", f"127.0.0.1:{z.admin_port}",
                    "--envoy-dir", str(zd / "envoy"), "--ports", f"{z.app_ports[0]}-{z.app_ports[1]}",
                    "--targets-file", str(zd / "prometheus" / "targets.json"), "--ready-file", str(ready),
                    "--stop-instances", *agent_privileges(bin_dir)], env=path_env)
                return self.agents[z.name]

            def repick() -> None:
                z.ssh_port = free_port()
            return _Part(f"agent-{z.name}", launch, ready.exists, repick)

        self._bring_up([self._edge_part(), *(prometheus(z) for z in zones),
                        *(fed_agent(z) for z in zones if z.name not in self.kube_zones)])
        self._known_hosts()
        self.fleet_file.write_text(specfiles.dump([self.fleet_doc()]))

    def _ingress_part(self, z: ZoneProcs) -> _Part:
        def launch() -> Proc:
            boot = self._zone_config(z)
            return self.sup.start(f"envoy-{z.name}", [tool("envoy"), "-c", str(boot), "--log-level", "warn",
                                                      "--base-id", str(z.admin_port)], outlive_parent=True)

        def repick() -> None:
            z.ingress_port, z.admin_port = free_port(), free_port()
            z.extra_ports = {s: free_port() for s in z.extra_ports}
        return _Part(f"envoy-{z.name}", launch, lambda: _http_ok(f"http://127.0.0.1:{z.admin_port}/ready"), repick)

    def _edge_part(self) -> _Part:
        def launch() -> Proc:
            boot = self._edge_config()
            return self.sup.start("envoy-edge", [tool("envoy"), "-c", str(boot), "--log-level", "warn",
                                                 "--base-id", str(self.edge_admin)], outlive_parent=True)

        def repick() -> None:
            self.edge_port, self.edge_admin = free_port(), free_port()
            self.edge_extra = {s: free_port() for s in self.edge_extra}
        return _Part("envoy-edge", launch, lambda: _http_ok(f"http://127.0.0.1:{self.edge_admin}/ready"), repick)

    def _bring_up(self, parts: list[_Part], timeout: float = 60.0) -> None:
        """Start ``parts`` together, then wait for each; one that exits because its address is in
        use starts again on fresh ports (at most ``PORT_ATTEMPTS`` times)."""
        procs = {part.name: part.launch() for part in parts}
        for part in parts:
            for attempt in range(1, PORT_ATTEMPTS + 1):
                proc = procs[part.name]
                deadline = time.monotonic() + timeout
                while not part.up():
                    if not proc.alive() or time.monotonic() > deadline:
                        break
                    time.sleep(0.1)
                if part.up():
                    break
                if proc.alive():
                    raise FederationError(f"{part.name} not ready after {timeout:g}s:\n{proc.tail()}")
                tail = proc.tail()
                if ADDRESS_IN_USE not in tail.lower() or attempt == PORT_ATTEMPTS:
                    raise FederationError(f"{part.name} exited at start:\n{tail}")
                log.info("%s: a port it was given was taken before it could bind; starting it on fresh ports",
                         part.name)
                self.sup.stop(proc)
                proc.log_path.write_text("")  # the next attempt's log, not this one's
                part.repick()
                procs[part.name] = part.launch()

    def start_ingress(self, zone: str, timeout: float = 60.0) -> None:
        """Only the ingress Envoy of ``zone`` (a zone whose instances something else runs: a
        Kubernetes zone's mesh stand-in programs it, ``demo.zonemesh``). Started again on fresh
        ports if one was taken; the edge, if running, then restarts to point at the new port."""
        z = next(x for x in self.zones if x.name == zone)
        before = z.ingress_port
        self._bring_up([self._ingress_part(z)], timeout)
        edge = next((p for p in self.sup.procs if p.name == "envoy-edge"), None)
        if edge is not None and z.ingress_port != before:
            self.sup.stop(edge)
            self._bring_up([self._edge_part()], timeout)
        self.fleet_file.write_text(specfiles.dump([self.fleet_doc()]))

    def wait_ready(self, timeout: float = 60.0, only: Collection[str] | None = None) -> None:
        for p in self.sup.procs:
            if not p.alive():
                raise FederationError(f"{p.name} exited at start:\n{p.tail()}")
        wait_for(lambda: _http_ok(f"http://127.0.0.1:{self.edge_admin}/ready"), timeout, "edge Envoy")
        for z in (z for z in self.zones if only is None or z.name in only):
            wait_for(lambda z=z: _http_ok(f"http://127.0.0.1:{z.admin_port}/ready"), timeout, f"{z.name} ingress Envoy")
            wait_for(lambda z=z: _http_ok(f"http://127.0.0.1:{z.prom_port}/-/ready"), timeout, f"{z.name} Prometheus")
            if z.name not in self.kube_zones:  # a Kubernetes zone runs no fed-agent
                wait_for(lambda z=z: (self.zdir(z.name) / "agent.ready").exists(), timeout, f"{z.name} fed-agent")

    @property
    def processes_file(self) -> Path:
        return self.workdir / "processes.json"

    def keep(self) -> list[int]:
        """Leave everything running past this process: record each process group (agents first, so
        they stop their app instances before anything else goes) in ``processes.json`` and return
        the group ids in that order."""
        order = sorted(self.sup.procs, key=lambda p: (not p.name.startswith("agent-"), p.name))
        groups = [p.pid for p in order]
        self.processes_file.write_text(json.dumps({p.name: p.pid for p in order}, indent=1) + "\n")
        return groups

    def stop(self) -> None:
        """Stop everything: agents first (they stop their app instances), then the rest."""
        for name, p in list(self.agents.items()):
            self.sup.stop(p, grace=15.0)
            self._stop_recorded_instances(name)
        self.sup.stop_all()
        self._release_ports()

    def _stop_recorded_instances(self, zone: str) -> None:
        # Safety net when an agent died without stopping its instances: their pids are on record.
        import vmagent.supervisor as agent_supervisor

        records = self.zdir(zone) / "agent" / "instances.json"
        try:
            data = json.loads(records.read_text())
        except (OSError, ValueError):
            return
        for r in data.values():
            pid = int(r.get("pid", 0))
            if pid > 0 and agent_supervisor.alive(pid):
                agent_supervisor.stop_group(pid, grace=2.0)

    def instance_pids(self, zone: str) -> list[int]:
        try:
            data = json.loads((self.zdir(zone) / "agent" / "instances.json").read_text())
        except (OSError, ValueError):
            return []
        return [int(r["pid"]) for r in data.values()]


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _keygen(path: Path, comment: str) -> None:
    if path.exists():
        return
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, stdout=subprocess.DEVNULL)
