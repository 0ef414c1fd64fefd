"""The chaos soak's Kubernetes zone: ``eks`` runs as a ``kind: kubernetes`` zone on a real
kube-apiserver (``demo.kubeapi``, built by ``make kube``), with the demo's local stand-ins for
Flux, the kubelet and the zone's mesh (``demo.kubezones``; plainly stand-ins, not Flux or
Linkerd), routing all five services. The hub reaches it only through its ServiceAccount's
kubeconfig, as it would reach EKS; Flux clones the zone repo through that repo's Git proxy, so a
Git fault reaches Flux too.

Faults of its own: Flux stalled (the source and kustomize controllers do nothing for a while; the
kubelet and the mesh go on, as in a cluster whose Flux is stuck) and the kube-apiserver restarted
(stopped, then started on the same etcd and port). Outside evidence of a step applied there: the
Kustomization's ``status.lastAppliedRevision`` as the API server holds it, read with the admin's
credentials, never the hub's.

Without the binaries (``kubezones.binaries()`` is None) the soak runs every zone as a VM zone and
says so.
Callers: ``tests.soak.chaos``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from pathlib import Path
from typing import Any

from federation.demo import kubezones
from federation.demo.fleet import LocalFleet
from federation.demo.procs import Proc, wait_for

log = logging.getLogger("federation.soak")
# The stand-ins' own account (pods started, terminating and stopped; the ingress clusters the mesh
# writes; a controller pass that failed), timestamped in <work>/controllers.log, for matching a
# violation's time to what the zone did then.
controllers_log = logging.getLogger("federation.demo")
KUBE_ZONES = ("eks",)
KUSTOMIZE = "kustomize.toolkit.fluxcd.io/v1"


def version_block(service: str, version: str, faulty: bool, fault_rate: str) -> str:
    """A version of a Kubernetes zone's ZoneRelease: an inline workload (the image; the stand-in
    kubelet runs the demo app for it, with the container's env). Images of their own: the demo's
    stand-in registry bakes a fault into ``shop/frontend:3.0.0``."""
    env = f'      env: {{FAULT_RATE: "{fault_rate}"}}\n' if faulty else ""
    return (f"    {version}:\n"
            f"      image: registry.example.com/soak/{service}:{version.removeprefix('v')}.0.0\n"
            f"      replicas: 1\n      health: /healthz\n{env}")


class KubeSide:
    """The Kubernetes zones of one soak: the API server, the stand-ins and their controller loop."""

    def __init__(self, fleet: LocalFleet, work: Path, services: tuple[str, ...]) -> None:
        self.fleet = fleet
        self.work = work
        self.services = services
        self.zones: kubezones.KubeZones | None = None
        self.flux_stalled = threading.Event()
        self.halt = threading.Event()
        self.thread: threading.Thread | None = None
        self.handler: logging.Handler | None = None
        self.errors = 0

    @staticmethod
    def available() -> bool:
        return kubezones.binaries() is not None

    def start(self, remotes: dict[str, str]) -> None:
        """After ``fleet.start`` (the zones' ingress Envoys are up): the API server, RBAC, Flux objects
        and stand-ins; ``remotes`` maps each Kubernetes zone to the repo URL its Flux clones."""
        bins = kubezones.binaries()
        assert bins is not None
        zones = {z.name: (remotes[z.name], self.fleet.zdir(z.name) / "envoy", f"127.0.0.1:{z.admin_port}")
                 for z in self.fleet.zones if z.name in KUBE_ZONES}
        self.work.mkdir(parents=True, exist_ok=True)
        self.handler = handler = logging.FileHandler(self.work / "controllers.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        controllers_log.addHandler(handler)
        controllers_log.setLevel(logging.INFO)
        self.zones = kubezones.start(bins, self.work, self.fleet.sup, zones, services=self.services)
        self.zones.clock = None  # step timings are the demo's; the soak judges from outside
        self.fleet.kubeconfig = self.zones.kubeconfig
        self.sync()
        self.thread = threading.Thread(target=self._loop, name="soak-kube-controllers", daemon=True)
        self.thread.start()

    def sync(self) -> None:
        """One pass of every zone's controllers (Flux skipped while stalled); a failing part
        retries at the next pass, as a controller does."""
        assert self.zones is not None
        for z in self.zones.zones.values():
            parts: list[Any] = [z.kubelet.sync, lambda z=z: z.mesh.sync(*self.services)]
            if not self.flux_stalled.is_set():
                parts.insert(0, z.flux.reconcile)
            for part in parts:
                try:
                    part()
                except Exception as exc:  # the API server away, an Envoy restarting: next pass
                    self.errors += 1
                    controllers_log.info("zone %s: %s: %s", z.name, getattr(part, "__name__", "mesh"), exc)

    def _loop(self) -> None:
        while not self.halt.wait(0.3):
            self.sync()

    def pids(self) -> list[int]:
        """The pods' processes (the stand-in kubelet's), for the no-process-left-behind check."""
        if self.zones is None:
            return []
        return [p.proc.pid for z in self.zones.zones.values() for p in list(z.kubelet.pods)]

    def applied_revision(self, zone: str) -> str | None:
        """The zone repo commit the zone's Flux Kustomization last applied (``main@sha1:<sha>``)."""
        if self.zones is None:
            return None
        kube = self.zones.kube
        try:
            r = kube.request("GET", kube.path(KUSTOMIZE, "Kustomization", kubezones.FLUX_NS, zone))
        except Exception:  # the API server restarting: not known
            return None
        if r.status_code != 200:
            return None
        revision = str((r.json().get("status") or {}).get("lastAppliedRevision") or "")
        sha = revision.rpartition(":")[2]
        return sha if len(sha) == 40 else None

    # -- faults ---------------------------------------------------------------------------------

    async def fault_flux(self, rng: random.Random) -> str:
        span = rng.uniform(3, 12)
        self.flux_stalled.set()
        try:
            await asyncio.sleep(span)
        finally:
            self.flux_stalled.clear()
        return f"Flux stalled {span:.0f}s ({', '.join(KUBE_ZONES)})"

    async def fault_apiserver(self, rng: random.Random, remember: Any) -> str:
        """kube-apiserver stopped and started again on the same etcd and port."""
        assert self.zones is not None
        kube = self.zones.kube
        old = kube.apiserver
        argv = [str(a) for a in old.popen.args]  # type: ignore[union-attr]
        await asyncio.to_thread(self.fleet.sup.stop, old)
        down = rng.uniform(2, 8)
        await asyncio.sleep(down)
        new: Proc = self.fleet.sup.start("kube-apiserver", argv)
        kube.apiserver = new
        remember(new.pid)

        def ready() -> bool:
            if not new.alive():
                raise RuntimeError(f"kube-apiserver exited after its restart: {new.tail(20)}")
            try:
                return kube.client.get(f"{kube.url}/readyz").status_code == 200
            except Exception:
                return False
        await asyncio.to_thread(wait_for, ready, 120, "kube-apiserver back", interval=0.2)
        return f"kube-apiserver stopped {down:.0f}s, restarted"

    def stop(self) -> None:
        self.halt.set()
        if self.thread is not None:
            self.thread.join(timeout=30)
        if self.zones is not None:
            self.zones.stop()
        if self.handler is not None:
            controllers_log.removeHandler(self.handler)
            self.handler.close()
