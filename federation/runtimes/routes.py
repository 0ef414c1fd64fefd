"""Mesh routes: where a step's route goes and how the hub knows it is live (``ports.MeshRoute``).

``EdgeRoute``: the hub-managed Envoy edge (provider envoy); live when the edge's RDS
``version_text`` carries the step. ``KubeRoute``: a mesh with a global control plane (Kuma, Gateway
API/Linkerd, SMI, Istio); the provider's manifests are committed to the mesh repo in any case (the
record), then either Flux applies them there (``apply: gitops``: live once the mesh Kustomization
reports a revision holding our commit) or the hub server-side applies them (``apply: direct``: live
once every object carries our step annotation). ``NoRoute``: a mesh with nothing to apply (tests,
benchmarks): every rendered step is live at once. ``build`` picks one per fleet.
Callers: ``hub`` (built once, used by the executor and the worker).
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from federation.core import spec as specs
from federation.core.errors import FederationError, PermanentError
from federation.gitops.aio import AsyncRepo
from federation.routers import envoy as envoy_router
from federation.routers import factory
from federation.routers.model import RouteRequest
from federation.runtimes import kubernetes as kube
from federation.runtimes.edge import EnvoyEdge
from federation.runtimes.flux import flux_of
from federation.runtimes.ports import MeshRoute

log = logging.getLogger("federation.routes")

ROLLOUT_ANNOTATION = "federation.io/rollout"
STEP_ANNOTATION = "federation.io/step"
MESH = "mesh"  # the mesh's key among the fleet's repos and applied targets (never a zone's name)


class EdgeRoute:
    poll_seconds = 0.05
    applied_by_commit = False  # the hub writes the edge's file

    def __init__(self, edge: EnvoyEdge) -> None:
        self.edge = edge

    def render(self, req: RouteRequest) -> list[dict[str, Any]]:
        return envoy_router.render(req)

    async def apply(self, docs: list[dict[str, Any]]) -> None:
        await self.edge.apply(docs[0])

    async def live_step(self, rollout: str, service: str, step: int) -> int | None:
        return envoy_router.step_of(await self.edge.version_text(service), rollout)


class KubeRoute:
    poll_seconds = 0.5

    def __init__(self, mesh: specs.Mesh, api: kube.Api, flux: kube.FluxZone | None, repo: AsyncRepo) -> None:
        self.router = mesh.router or factory.PROVIDER_DEFAULT[mesh.provider.value]
        self.api = api
        self.flux = flux  # None: direct mode
        self.repo = repo  # the mesh repo (gitops mode maps Flux's revision to our steps through it)
        self.applied_by_commit = flux is not None  # gitops: Flux applies what is committed
        self.objects: dict[str, list[tuple[str, str, str | None, str]]] = {}  # rollout -> (apiVersion, kind, ns, name)

    def render(self, req: RouteRequest) -> list[dict[str, Any]]:
        docs = []
        for d in factory.render(self.router, req):
            d = copy.deepcopy(d)
            meta = d.setdefault("metadata", {})
            meta.setdefault("annotations", {}).update({ROLLOUT_ANNOTATION: req.rollout, STEP_ANNOTATION: str(req.step)})
            docs.append(d)
        self.objects[req.rollout] = [(d["apiVersion"], d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"])
                                     for d in docs]
        return docs

    async def apply(self, docs: list[dict[str, Any]]) -> None:
        if self.flux is not None:
            try:
                await self.flux.request_reconcile()
            except FederationError as exc:  # Flux still reconciles on its own interval
                log.warning("mesh: reconcile request failed: %s", exc)
            return
        for d in docs:
            await kube.server_side_apply(self.api, d)

    async def live_step(self, rollout: str, service: str, step: int) -> int | None:
        if self.flux is not None:
            st = await self.flux.status()
            if not st.ready:
                return None
            return await self.repo.step_reached(rollout, st.revision, step)
        refs = self.objects.get(rollout)
        if not refs:
            return None  # nothing applied by this hub process yet: a restarted worker applies again
        steps = []
        for api_version, kind, ns, name in refs:
            try:
                obj = await kube.get_object(self.api, api_version, kind, ns, name)
            except FederationError:
                return None
            notes = ((obj or {}).get("metadata") or {}).get("annotations") or {}
            if obj is None or notes.get(ROLLOUT_ANNOTATION) != rollout or not str(notes.get(STEP_ANNOTATION, "")).isdigit():
                return None
            steps.append(int(notes[STEP_ANNOTATION]))
        return min(steps)


class NoRoute:
    """Nothing to apply: the rendered step is live at once (tests and benchmarks of the hub)."""

    poll_seconds = 0.0
    applied_by_commit = False

    def __init__(self) -> None:
        self.live: dict[str, int] = {}

    def render(self, req: RouteRequest) -> list[dict[str, Any]]:
        return [{"rollout": req.rollout, "step": req.step}]

    async def apply(self, docs: list[dict[str, Any]]) -> None:
        for d in docs:
            self.live[d["rollout"]] = d["step"]

    async def live_step(self, rollout: str, service: str, step: int) -> int | None:
        return self.live.get(rollout)


def build(mesh: specs.Mesh, repo: AsyncRepo) -> MeshRoute:
    """The fleet's mesh route: the hub's Envoy edge, or the provider's objects on the global control plane."""
    if mesh.provider is specs.MeshProvider.ENVOY:
        if mesh.edge is None:
            raise PermanentError("mesh.provider envoy: the hub runs the edge Envoy, so mesh.edge (rdsPath, admin) "
                                 "is required")
        return EdgeRoute(EnvoyEdge(mesh.edge))
    if mesh.kubeconfig is None:
        raise PermanentError(f"mesh.provider {mesh.provider.value}: mesh.kubeconfig (the mesh's global control "
                             f"plane) is required to {'apply' if mesh.apply is specs.MeshApply.DIRECT else 'observe'} "
                             "routes")
    api = kube.Api(kube.api_client(mesh.kubeconfig))
    flux = flux_of(api, mesh.flux, MESH) if mesh.apply is specs.MeshApply.GITOPS else None
    return KubeRoute(mesh, api, flux, repo)
