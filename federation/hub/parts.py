"""The hub's parts for one fleet, built once: clones, zone runtimes, the mesh route, the executor,
the analyzer. A container, no logic: discovery reads the mesh repo through ``gitops.meshrepo``,
the worker observes through ``runtimes.ports``, steps go through ``hub.executor``.
Callers: ``hub.service``, the demo, tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from federation import specfiles
from federation.core import spec as specs
from federation.gitops import meshrepo
from federation.gitops.aio import AsyncRepo
from federation.hub.executor import Executor
from federation.metrics.analysis import Analyzer
from federation.runtimes import kubernetes, routes, ssh, zones
from federation.runtimes.flux import KubeZone
from federation.runtimes.ports import MeshRoute, ZoneRuntime
from federation.runtimes.routes import MESH


@dataclass
class Parts:
    fleet: specs.Fleet
    repos: dict[str, AsyncRepo]  # every zone's repo, and the mesh repo under MESH
    zones: dict[str, ZoneRuntime]
    route: MeshRoute
    executor: Executor
    analyzer: Analyzer
    pool: ssh.Pool | None = None
    history: dict[str, tuple[str, specs.FederatedCanary | None]] = field(default_factory=dict)  # file -> (head, found)

    @property
    def mesh(self) -> AsyncRepo:
        return self.repos[MESH]

    async def sync(self, names: list[str] | None = None) -> None:
        """Clone or fetch the fleet's repos; MetricTemplates re-read from the mesh repo."""
        await asyncio.gather(*[self.repos[n].ensure() for n in names or list(self.repos)])
        self.analyzer.templates = await meshrepo.metric_templates(self.mesh)

    async def canaries(self, running: Iterable[str] = ()) -> meshrepo.Found:
        return await meshrepo.canaries(self.mesh, self.fleet, self.repos,
                                       specfiles.template_queries(self.analyzer.templates), running)

    async def last_valid(self, path: str) -> specs.FederatedCanary | None:
        """``meshrepo.last_valid``, looked up once per file and mesh commit."""
        head = await self.mesh.head()
        if self.history.get(path, ("", None))[0] != head:
            self.history[path] = (head, await meshrepo.last_valid(self.mesh, self.fleet, self.repos, path,
                                                                  specfiles.template_queries(self.analyzer.templates)))
        return self.history[path][1]

    async def close(self) -> None:
        """SSH connections, and the pooled connections of every Kubernetes client (zones, mesh)."""
        if self.pool is not None:
            await self.pool.close()
        for z in self.zones.values():
            if isinstance(z, KubeZone):
                z.flux.api.close()
        if isinstance(self.route, routes.KubeRoute):
            self.route.api.close()
        kube = getattr(self.analyzer, "kube", None)  # an in-memory analyzer (tests) has none
        if isinstance(kube, kubernetes.ZoneObjects):
            kube.close()


def build(fleet: specs.Fleet, workdir: Path) -> Parts:
    """Every part of a fleet, each zone's runtime chosen once from its kind."""
    workdir = Path(workdir)
    pool = ssh.Pool()
    repos = {name: AsyncRepo.of(src, workdir / "repos" / name)
             for name, src in [*((z.name, z.git) for z in fleet.spec.zones), (MESH, fleet.spec.mesh.git)]}
    runtimes = {z.name: zones.build(z, repos[z.name], pool, fleet.spec.mesh.provider) for z in fleet.spec.zones}
    route = routes.build(fleet.spec.mesh, repos[MESH])
    executor = Executor(fleet, runtimes, repos[MESH], route)
    return Parts(fleet, repos, runtimes, route, executor, Analyzer(fleet, kube=kubernetes.ZoneObjects()), pool)
