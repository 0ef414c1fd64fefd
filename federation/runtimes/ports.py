"""The hub's two ports to the outside of a rollout: a zone's runtime and the mesh route.

``ZoneRuntime`` (one per zone, chosen once by ``runtimes.zones.build``): commit a step's edit to the
zone repo, ask the zone to converge on it, observe what it applied and how ready each version is.
Implemented by ``runtimes.vm.VmZone`` (agents over SSH) and ``runtimes.flux.KubeZone`` (Flux and
Deployments). ``MeshRoute`` (one per fleet, ``runtimes.routes.build``): render a step's route,
apply it, and say which step is live — Flagger's router interface with Argo Rollouts'
SetWeight/VerifyWeight pair. Callers: ``hub.executor``, ``hub.worker``.
"""

from __future__ import annotations

from typing import Any, Protocol

from federation.core.spec import FederatedCanary
from federation.core.steps import StepRecord
from federation.gitops.aio import AsyncRepo
from federation.routers.model import RouteRequest


class ZoneObservation(Protocol):
    """What one zone reported on one tick."""

    @property
    def zone(self) -> str: ...

    def applied_step(self) -> int | None:
        """The step the whole zone has applied (None: unknown, or some part unreachable)."""

    def ready_percent(self, service: str, version: str) -> float | None:
        """Percent of ``version``'s instances ready (None: it does not run there, or unknown)."""

    def failed(self, service: str, version: str) -> str:
        """Why ``version`` cannot progress in this zone (empty: it can)."""

    def reasons(self) -> list[str]:
        """What stands in the way, for people (unreachable hosts, Flux errors, unready workloads)."""


class ZoneRuntime(Protocol):
    name: str
    repo: AsyncRepo  # the zone repo the runtime applies
    pull_request: bool  # steps go to a branch and converge once merged

    async def commit(self, canary: FederatedCanary, record: StepRecord, message: str,
                     branch: str | None = None) -> str | None:
        """Commit ``record``'s weights to the zone repo (the ZoneRelease's serving; in a Kubernetes
        zone also the workloads it implies, ``runtimes.workloads``); the pushed commit, or None."""

    async def converge(self, step: int) -> None:
        """Ask the zone to apply its repo's head now (it may also do so on its own)."""

    async def observe(self, canary: FederatedCanary, step: int) -> ZoneObservation:
        """What the zone applied (mapped to our steps, ``step`` being the current one) and readiness."""


class MeshRoute(Protocol):
    poll_seconds: float  # how often to ask ``live_step`` while waiting for a step
    applied_by_commit: bool  # committing the route to the mesh repo applies it (Flux there): never before the zones

    def render(self, req: RouteRequest) -> list[dict[str, Any]]:
        """The route documents of one step (committed to the mesh repo by the executor)."""

    async def apply(self, docs: list[dict[str, Any]]) -> None:
        """Make the rendered route take effect (write the edge's file, reconcile, or server-side apply)."""

    async def live_step(self, rollout: str, service: str, step: int) -> int | None:
        """The step the live route is at for ``rollout`` (None: unknown or not applied)."""
