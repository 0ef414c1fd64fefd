"""The agent's loop: make this VM match the stored desired state, and say how far it got.

Order within one pass keeps traffic whole: new versions start and pass health checks before Envoy
learns their clusters; the route changes only once the clusters are applied; retired versions leave
the route first, drain, and only then stop. ``applied_revision`` moves only when Envoy reports the
route for that revision and every serving version has its replicas healthy. Standard library only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from vmagent import PROTOCOL_VERSION, __version__, envoy, manifests, state, supervisor, units
from vmagent.protocol import ApplyAnswer, Desired, DrainAnswer, StatusAnswer, VersionStatus

log = logging.getLogger("vmagent")


class Config:
    def __init__(self, state_dir: str, zone: str, envoy_admin: str | None, envoy_dir: str | None,
                 stat_prefix: str = "ingress", ports: tuple[int, int] = (20000, 20999),
                 targets_file: str | None = None, interval: float = 0.5, runner: str = "process",
                 unit_dir: str = "/etc/systemd/system", systemctl: str = "systemctl",
                 allowed_commands: tuple[str, ...] | None = None, app_user: str | None = None,
                 allow_root_apps: bool = True) -> None:
        self.state_dir = state_dir
        self.zone = zone
        self.envoy_admin = envoy_admin
        self.envoy_dir = envoy_dir
        self.stat_prefix = stat_prefix
        self.ports = ports
        self.targets_file = targets_file
        self.interval = interval
        self.runner = runner  # "process", "systemd", or "auto" (systemd where it is the init system)
        self.unit_dir = unit_dir
        self.systemctl = systemctl
        # Least privilege (the CLI's defaults are strict; None here: no restriction, for tests):
        # commands must resolve under these directories of the VM; apps run as ``app_user``;
        # an app running as root is refused unless ``allow_root_apps``.
        self.allowed_commands = allowed_commands
        self.app_user = app_user
        self.allow_root_apps = allow_root_apps


def drain_answer(enable: bool, active: int, envoy_state: str | None) -> DrainAnswer:
    drained = enable and active == 0 and envoy_state in (None, "DRAINING")
    return {"draining": enable, "drained": drained, "active_requests": active, "envoy_state": envoy_state}


def releases(desired: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in desired.get("manifests", []) if isinstance(m, dict) and m.get("kind") == "ZoneRelease"]


class Agent:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.state = state.StateDir(config.state_dir)
        log_dir = os.path.join(config.state_dir, "logs")
        runner = config.runner
        if runner == "auto":
            runner = "systemd" if units.systemd_booted() else "process"
        self.sup: supervisor.Supervisor = (
            units.SystemdSupervisor(log_dir, *config.ports, unit_dir=config.unit_dir, systemctl=config.systemctl,
                                    user=config.app_user, allow_root=config.allow_root_apps)
            if runner == "systemd" else supervisor.Supervisor(log_dir, *config.ports, user=config.app_user,
                                                              allow_root=config.allow_root_apps))
        self.runner = runner
        self.sup.adopt(self.state.instances())
        # An adopted instance is as healthy as the last run reported it (same pid): one slow first
        # check after an agent restart must not take a serving instance out of the route (503).
        for i in (self.state.report() or {}).get("instances") or []:
            inst = self.sup.instances.get(str(i.get("key"))) if isinstance(i, dict) else None
            if inst is not None and i.get("pid") == inst.pid and i.get("healthy") is True:
                inst.healthy = True
        self.admin = envoy.Admin(config.envoy_admin) if config.envoy_admin else None
        self.wake = asyncio.Event()
        self.applied_revision: str | None = None
        self.applied_step: int | None = None
        self.error: str = ""
        self._routes: dict[str, str] = {}
        self._clusters_version: str | None = None
        self._stopping = False

    # -- the protocol's answers --------------------------------------------------------------

    def status(self) -> StatusAnswer:
        desired = self.state.desired() or {}
        draining = self.draining()
        versions: dict[str, VersionStatus] = {}
        for rel in releases(desired):
            service = rel["spec"]["service"]
            for version in rel["spec"].get("serving") or {}:
                insts = [i for i in self.sup.instances.values() if i.service == service and i.version == version]
                replicas = int(rel["spec"]["versions"].get(version, {}).get("replicas", 1))
                healthy = sum(1 for i in insts if i.healthy)
                versions[f"{service}/{version}"] = {
                    "replicas": replicas, "healthy": healthy,
                    "ready_percent": 100.0 * min(healthy, replicas) / replicas if replicas else 100.0,
                }
        answer: StatusAnswer = {
            "protocol": PROTOCOL_VERSION,
            "agent_version": __version__,
            "zone": self.config.zone,
            "runner": self.runner,
            "revision": desired.get("revision"),
            "step": desired.get("step"),
            "generation": desired.get("generation"),
            "applied_revision": self.applied_revision,
            "applied_step": self.applied_step,
            "health": "draining" if draining else ("ok" if not self.error else "degraded"),
            **({"draining": True, "active_requests": self.in_flight(),
                "envoy_state": self.admin.server_state() if self.admin else None} if draining else {"draining": False}),
            "error": self.error,
            "versions": versions,
            "instances": [dict(i.record(), key=i.key, healthy=i.healthy) for i in self.sup.instances.values()],
        }
        return answer

    def apply(self, desired: Desired) -> ApplyAnswer:
        out = self.state.accept(desired)
        self.wake.set()
        return out

    def rollback(self) -> ApplyAnswer:
        out = self.state.restore_previous()
        self.wake.set()
        return out

    def draining(self) -> bool:
        return state.read_drain(self.state)

    def drain(self, enable: bool, timeout: float) -> DrainAnswer:
        """Take this VM out of rotation (maintenance, decommission) or put it back.

        The flag is stored first (a restarted agent, or a restarted Envoy, drains again); the local
        Envoy then fails its health check, so the zone's load balancer stops sending new requests,
        while requests still arriving are served. With ``timeout`` the answer waits until no
        request is in flight to this VM's instances (``drained``). Desired state keeps converging:
        a drained VM is current when it comes back.
        """
        state.write_drain(self.state, enable)
        envoy_ok = self.admin.set_health(not enable) if self.admin is not None else None
        if enable and self.admin is not None and timeout > 0:
            self._wait(lambda: self.in_flight() == 0, timeout=timeout)
        active = self.in_flight()
        log.info("drain %s: envoy %s, %d request(s) in flight", "on" if enable else "off",
                 {True: "took it", False: "did not answer", None: "absent"}[envoy_ok], active)
        self.wake.set()
        return drain_answer(enable, active, self.admin.server_state() if self.admin else None)

    def in_flight(self) -> int:
        if self.admin is None:
            return 0
        clusters = sorted({envoy.cluster_name(i.service, i.version) for i in self.sup.instances.values()})
        return self.admin.total_active_requests(clusters)

    # -- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                await asyncio.to_thread(self.converge_once)
                if self.error:
                    log.info("converge pass succeeded again (after %d failed)", failures)
                self.error = ""
                failures = 0
            except Exception as exc:  # keep supervising whatever one pass hit
                error = f"{type(exc).__name__}: {exc}"
                failures += 1
                if error != self.error:
                    # One line per distinct error: a missing binary or a full disk is expected and
                    # needs no traceback; anything else gets one, once.
                    if isinstance(exc, (OSError, ValueError)):
                        log.warning("converge pass failed: %s (retrying with back-off)", error)
                    else:
                        log.exception("converge pass failed (retrying with back-off)")
                self.error = error
            self.wake.clear()
            # Back off while the same pass keeps failing (a new desired state still wakes at once).
            delay = self.config.interval * min(2 ** failures, 16) if failures else self.config.interval
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass

    def stop(self) -> None:
        self._stopping = True
        self.wake.set()

    def shutdown_instances(self) -> None:
        for key in list(self.sup.instances):
            self.sup.stop(key)
        self.state.set_instances(self.sup.records())

    def converge_once(self) -> None:
        if self.admin is not None:
            # The stored drain flag wins: set by ``fed-agent rpc``, or lost by a restarted Envoy.
            draining, envoy_state = self.draining(), self.admin.server_state()
            if draining and envoy_state == "LIVE":
                self.admin.set_health(False)
            elif not draining and envoy_state == "DRAINING":
                self.admin.set_health(True)
        desired = self.state.desired()
        if desired is None:
            return
        manifests.check_desired(desired)  # stored by an older agent, or edited on disk: checked again
        wanted: dict[str, dict[str, Any]] = {}  # instance key -> spec
        serving: dict[tuple[str, str], int] = {}
        for rel in releases(desired):
            spec = rel["spec"]
            service = spec["service"]
            for version, weight in (spec.get("serving") or {}).items():
                vspec = spec["versions"].get(version)
                if vspec is None:
                    raise ValueError(f"{service}: serving names version {version!r} missing from versions")
                serving[(service, version)] = int(weight)
                manifests.resolve_command(str(vspec["command"][0]), self.config.allowed_commands)
                for i in range(int(vspec.get("replicas", 1))):
                    wanted[f"{service}/{version}/{i}"] = dict(vspec, service=service, version=version)
        # 1. start what is missing, restart what died (drift)
        for key, spec in wanted.items():
            inst = self.sup.instances.get(key)
            if inst is not None and not self.sup.alive(inst):
                log.warning("instance %s (pid %d) died: restarting", key, inst.pid)
                self.sup.instances.pop(key)
                self.sup.start(key, spec["service"], spec["version"], spec["command"], self.env(spec),
                               spec.get("health", "/healthz"), restarts=inst.restarts + 1)
            elif inst is None:
                self.sup.start(key, spec["service"], spec["version"], spec["command"], self.env(spec),
                               spec.get("health", "/healthz"))
        self.state.set_instances(self.sup.records())
        for inst in self.sup.instances.values():
            self.sup.check_health(inst)
        self.write_targets()
        retired = [k for k in self.sup.instances if k not in wanted]
        routed_ok = self.route(serving)
        if routed_ok:
            for key in retired:
                self.drain_and_stop(key)
            if retired:
                self.state.set_instances(self.sup.records())
                self.route(serving)  # drop the retired clusters now nothing routes to them
                self.write_targets()
        ready = all(
            sum(1 for i in self.sup.instances.values() if i.service == s and i.version == v and i.healthy)
            >= sum(1 for k in wanted if k.startswith(f"{s}/{v}/"))
            for (s, v) in serving
        )
        if routed_ok and ready and not [k for k in self.sup.instances if k not in wanted]:
            if self.applied_revision != desired["revision"]:
                log.info("applied revision %s (step %s)", desired["revision"], desired.get("step"))
            self.applied_revision = desired["revision"]
            self.applied_step = desired.get("step")
        self.state.set_report(self.status())

    def env(self, spec: dict[str, Any]) -> dict[str, str]:
        out = {str(k): str(v) for k, v in (spec.get("env") or {}).items()}
        out["FED_ZONE"] = self.config.zone
        return out

    def route(self, serving: dict[tuple[str, str], int]) -> bool:
        """Push clusters then routes to Envoy; True once Envoy reports both applied."""
        desired = self.state.desired() or {}
        if self.admin is None or self.config.envoy_dir is None:
            return True
        endpoints: dict[str, list[int]] = {}
        for inst in self.sup.instances.values():
            if inst.healthy:
                endpoints.setdefault(envoy.cluster_name(inst.service, inst.version), []).append(inst.port)
        cds_path = envoy.clusters_path(self.config.envoy_dir)
        cds_version = envoy.digest(endpoints)
        if self.admin.clusters_version() != cds_version:
            envoy.write(cds_path, envoy.render_clusters(endpoints, cds_version))
            if not self._wait(lambda: self.admin.clusters_version() == cds_version):
                return False
        by_service: dict[str, list[tuple[str, int]]] = {s: [] for s, _ in serving}
        by_service.update({s: [] for s in self._routes})  # a service that left still gets a (503) route
        for (service, version), weight in sorted(serving.items()):
            name = envoy.cluster_name(service, version)
            if name in endpoints:
                by_service[service].append((name, weight))
        version_info = f"{desired.get('revision', 'none')}.{envoy.digest(by_service)}"
        current = {s: self.admin.route_version(self.config.stat_prefix, s) for s in by_service}
        stale = [s for s, v in current.items() if v != version_info]
        for service in stale:
            envoy.write(envoy.route_path(self.config.envoy_dir, service),
                        envoy.render_route(service, by_service[service], version_info))
        if stale:
            ok = self._wait(lambda: all(
                self.admin.route_version(self.config.stat_prefix, s) == version_info for s in by_service))
            if not ok:
                return False
        self._routes = {s: version_info for s in by_service}
        return True

    def drain_and_stop(self, key: str) -> None:
        inst = self.sup.instances.get(key)
        if inst is None:
            return
        if self.admin is not None:
            name = envoy.cluster_name(inst.service, inst.version)
            self._wait(lambda: self.admin.active_requests(name) == 0, timeout=10.0)
        log.info("stopping retired instance %s (pid %d)", key, inst.pid)
        self.sup.stop(key)

    def write_targets(self) -> None:
        if not self.config.targets_file:
            return
        groups = [{"targets": [f"127.0.0.1:{i.port}"],
                   "labels": {"zone": self.config.zone, "service": i.service, "version": i.version}}
                  for i in sorted(self.sup.instances.values(), key=lambda i: i.key)]
        import json

        data = json.dumps(groups, indent=1).encode()
        try:
            with open(self.config.targets_file, "rb") as f:
                if f.read() == data:
                    return
        except FileNotFoundError:
            pass
        state.write_atomic(self.config.targets_file, data, mode=0o644)

    @staticmethod
    def _wait(check: Any, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return True
            time.sleep(0.05)
        return False
