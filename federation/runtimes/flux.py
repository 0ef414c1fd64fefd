"""Kubernetes zones driven through Flux: the hub's ``ZoneRuntime`` for ``kind: kubernetes``.

A step is committed to the zone repo; converging asks Flux to reconcile now (the GitRepository and
Kustomization reconcile annotation; Flux also reconciles on its own interval). Observing maps
Flux's ``lastAppliedRevision`` back to our steps through Git ancestry, and reads each version's
Deployment ``<service>-<version>``: readiness, and ProgressDeadlineExceeded (the canary then rolls
back at once, as in Flagger). When the zone's ingress names its Envoy admin (``ingress.adminPort``),
a zone whose Deployments are ready counts ready only once that ingress routes the service somewhere:
pods turn Ready before the mesh has their endpoints, and traffic sent meanwhile would find a route
to nothing (503). Callers: ``runtimes.zones`` (built per zone), the hub.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from federation.core import spec as specs
from federation.core.errors import FederationError
from federation.core.steps import StepRecord
from federation.gitops import releases
from federation.gitops.aio import AsyncRepo
from federation.gitops.repo import Repo
from federation.runtimes import envoy_admin, workloads
from federation.runtimes import kubernetes as kube

log = logging.getLogger("federation.flux")


@dataclass(frozen=True)
class KubeZoneStatus:
    """What a Kubernetes zone reported: the step Flux applied (None: not ready) and readiness."""

    zone: str
    step: int | None
    ready: dict[str, float | None]
    error: str = ""
    stalled: dict[str, str] = field(default_factory=dict)  # version -> the Deployment's ProgressDeadlineExceeded

    def failed(self, service: str, version: str) -> str:
        return self.stalled.get(version, "")

    def applied_step(self) -> int | None:
        return self.step

    def ready_percent(self, service: str, version: str) -> float | None:
        return self.ready.get(version)

    def reasons(self) -> list[str]:
        return [self.error] if self.error else []


def flux_of(api: kube.Api, ref: specs.FluxRef | None, default_name: str) -> kube.FluxZone:
    """The Flux objects applying a repo: the Kustomization (default ``default_name``) and its source."""
    f = ref or specs.FluxRef()
    ks = f.kustomization or default_name
    return kube.FluxZone(api, f.namespace, ks, f.git_repository or ks)


# How a zone splits between its local versions when its Fleet does not say.
LOCAL_ROUTE = {specs.MeshProvider.KUMA: specs.ZoneRouteKind.NONE, specs.MeshProvider.ISTIO: specs.ZoneRouteKind.NONE,
               specs.MeshProvider.SMI: specs.ZoneRouteKind.TRAFFICSPLIT,
               specs.MeshProvider.GATEWAYAPI: specs.ZoneRouteKind.HTTPROUTE,
               specs.MeshProvider.ENVOY: specs.ZoneRouteKind.HTTPROUTE}


class KubeZone:
    """A Kubernetes zone as the hub drives it (``runtimes.ports.ZoneRuntime``): each step's commit
    holds the ZoneRelease's serving and the workloads it implies (``runtimes.workloads``), under
    the path Flux applies; converging asks Flux to reconcile; observing reads Flux and the
    Deployments the hub rendered."""

    def __init__(self, zone: specs.Zone, repo: AsyncRepo, flux: kube.FluxZone,
                 provider: specs.MeshProvider = specs.MeshProvider.KUMA) -> None:
        ref = zone.flux or specs.FluxRef()
        self.name = zone.name
        self.repo = repo
        self.pull_request = zone.git.pull_request
        self.flux = flux
        self.workload_namespace = ref.workload_namespace
        self.flux_path = ref.path
        self.local_route = ref.local_route or LOCAL_ROUTE[provider]
        self.follow_weight = ref.replicas == "weight"
        ingress = zone.ingress
        self.ingress_admin = (ingress.address, ingress.admin_port) if ingress and ingress.admin_port else None

    @staticmethod
    def of(zone: specs.Zone, repo: AsyncRepo, provider: specs.MeshProvider = specs.MeshProvider.KUMA) -> KubeZone:
        return KubeZone(zone, repo, flux_of(kube.Api(kube.api_client(zone.kubeconfig)), zone.flux, zone.name),
                        provider)

    def target(self, canary: specs.FederatedCanary) -> workloads.Target:
        s = canary.spec.service
        return workloads.Target(self.name, s.name, self.workload_namespace or canary.metadata.namespace, s.port,
                                self.local_route, s.target_port if isinstance(s.target_port, int) else None,
                                self.follow_weight)

    async def commit(self, canary: specs.FederatedCanary, record: StepRecord, message: str,
                     branch: str | None = None) -> str | None:
        edit = workloads.edit(self.target(canary), self.repo.path, self.flux_path, record)
        return await releases.commit_step(self.repo, self.name, canary.spec.service.name, record, message, branch, edit)

    def _image(self, repo: Repo, service: str, version: str) -> str | None:
        """The image ``version`` runs in this zone's repo (None: not defined there, or not valid)."""
        try:
            found = releases.find(repo, self.repo.path, service)
            if found is None:
                return None
            definition = ((found[1].get("spec") or {}).get("versions") or {}).get(version)
            w = workloads.workload(self.name, found[0], version, definition)
            template = None if w.template is None else \
                releases.read_template(repo, self.name, found[0], version, w.template)[1]
            return workloads.image_of(w, template)
        except FederationError:  # the step's commit says why, loudly
            return None

    async def _ingress_routes_nothing(self, service: str) -> str:
        """Why the zone's ingress cannot serve ``service`` yet ("": it routes it to some cluster)."""
        assert self.ingress_admin is not None
        address, port = self.ingress_admin
        clusters = await envoy_admin.routed_clusters(address, port, service)
        if isinstance(clusters, str):
            return f"zone ingress: {clusters}"
        if not clusters:
            return f"zone ingress {address}:{port} routes {service} nowhere yet (the mesh has no ready endpoints)"
        return ""

    async def converge(self, step: int) -> None:
        try:
            await self.flux.request_reconcile()
        except FederationError as exc:  # Flux still reconciles on its own interval
            log.warning("zone %s: reconcile request failed: %s", self.name, exc)

    async def observe(self, canary: specs.FederatedCanary, step: int) -> KubeZoneStatus:
        """Flux's applied revision mapped to our steps, and Deployment readiness per version."""
        spec = canary.spec
        ns = self.workload_namespace or canary.metadata.namespace
        try:
            st = await self.flux.status()
        except FederationError as exc:
            return KubeZoneStatus(self.name, None, {}, str(exc))
        applied = await self.repo.step_reached(canary.key, st.revision, step) if st.ready else None
        ready: dict[str, float | None] = {}
        stalled: dict[str, str] = {}
        reasons = [f"Flux: {st.reason}: {st.message}"] if st.failing else []
        # Only the sides placed in this zone: in a migration (one version, other zones) the version
        # here is the canary alone, and its threshold is the canary's.
        sides = [(p.version, threshold) for p, threshold in ((spec.primary, spec.analysis.primary_ready_threshold),
                                                             (spec.canary, spec.analysis.canary_ready_threshold))
                 if self.name in p.zones]
        versions = dict(sides)
        images = await self.repo.call(lambda r: {v: self._image(r, spec.service.name, v) for v in versions})
        target = self.target(canary)
        for version, threshold in versions.items():
            try:
                # Only the Deployment the hub rendered counts (its labels), and only once it runs the
                # image the zone repo defines (an image bump Flux has not applied yet is 0% ready).
                pct, why = await self.flux.deployment_ready(ns, target.name(version), threshold,
                                                            {**workloads.version_labels(target, version),
                                                             **workloads.MANAGED_BY}, images[version])
            except FederationError as exc:
                pct, why = None, str(exc)
            ready[version] = pct
            if why:
                reasons.append(why)
            if kube.PROGRESS_DEADLINE in why:
                stalled[version] = why
        if self.ingress_admin is not None and any(ready.values()):
            why = await self._ingress_routes_nothing(spec.service.name)
            if why:
                ready = {v: None if pct is None else 0.0 for v, pct in ready.items()}
                reasons.append(why)
        return KubeZoneStatus(self.name, applied, ready, "; ".join(reasons), stalled)
