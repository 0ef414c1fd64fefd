"""Where a step's mesh route goes, and how the hub knows it is live.

``EdgeRoute``: the hub-managed Envoy edge (provider envoy); the route is live when the edge's RDS
``version_text`` carries the step. ``KubeRoute``: a mesh with a global control plane (Kuma, Gateway
API/Linkerd, SMI, Istio); the provider's manifests are committed to the mesh repo in any case (the
record), then either Flux applies them there (``apply: gitops``: live once the mesh Kustomization
reports a revision holding our commit) or the hub server-side applies them (``apply: direct``: live
once every object carries our step annotation). Callers: ``hub.fleet``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any

from federation.core import spec as specs
from federation.core.errors import FederationError
from federation.routers import envoy as envoy_router
from federation.routers import factory
from federation.routers.model import RouteRequest
from federation.runtimes import kubernetes as kube
from federation.runtimes.edge import EnvoyEdge

log = logging.getLogger("federation.hub")

ROLLOUT_ANNOTATION = "federation.io/rollout"
STEP_ANNOTATION = "federation.io/step"


class EdgeRoute:
    def __init__(self, edge: EnvoyEdge) -> None:
        self.edge = edge

    def render(self, req: RouteRequest) -> list[dict[str, Any]]:
        return envoy_router.render(req)

    async def apply(self, docs: list[dict[str, Any]]) -> None:
        await self.edge.apply(docs[0])

    async def step(self, rollout: str, service: str, step: int) -> int | None:
        return envoy_router.step_of(await self.edge.version_text(service), rollout)


class KubeRoute:
    def __init__(self, mesh: specs.Mesh, api: kube.Api, flux: kube.FluxZone | None,
                 step_of_revision: Callable[[str, str | None, int], int | None]) -> None:
        self.mesh = mesh
        self.router = mesh.router or factory.PROVIDER_DEFAULT[mesh.provider.value]
        self.api = api
        self.flux = flux  # None: direct mode
        self.step_of_revision = step_of_revision  # (rollout, applied revision, step) -> step reached
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

    async def step(self, rollout: str, service: str, step: int) -> int | None:
        if self.flux is not None:
            st = await self.flux.status()
            if not st.ready:
                return None
            return self.step_of_revision(rollout, st.revision, step)
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
