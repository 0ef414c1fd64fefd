"""The fleet's adapters in one place: repos, zone runtimes, the edge, the analyzer.

Also the executor's Git and apply work for one ``SetWeights``: zone manifests edited in place
(only ``spec.serving`` moves), the mesh route rendered, one commit per repo per step, pushes, and
the order that keeps requests whole (see ``apply_step``). Callers: ``hub.worker``, the demo.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from federation import specfiles
from federation.core import spec as specs
from federation.core import steps
from federation.core.errors import FederationError, PermanentError, TemporaryError
from federation.core.state import SetWeights
from federation.gitops import repo as gitrepo
from federation.hub.mesh import EdgeRoute, KubeRoute
from federation.metrics.analysis import Analyzer
from federation.routers.model import RouteRequest
from federation.runtimes import kubernetes as kube
from federation.runtimes import ssh
from federation.runtimes.edge import EnvoyEdge
from federation.runtimes.vm import VmZone, ZoneStatus

log = logging.getLogger("federation.hub")

MESH = "mesh"


@dataclass(frozen=True)
class KubeZoneStatus:
    """What a Kubernetes zone reported: the step Flux applied (None: not ready) and readiness."""

    zone: str
    step: int | None
    ready: dict[str, float | None]
    error: str = ""
    stalled: dict[str, str] | None = None  # version -> the Deployment's ProgressDeadlineExceeded reason

    def failed(self, service: str, version: str) -> str:
        return (self.stalled or {}).get(version, "")

    def applied_step(self) -> int | None:
        return self.step

    def ready_percent(self, service: str, version: str) -> float | None:
        return self.ready.get(version)


@dataclass(frozen=True)
class StepResult:
    commits: dict[str, str]  # repo name -> sha (only repos that changed)


@dataclass
class Deferred:
    """A step whose zone commits wait in pull-request branches: each zone converges once its branch
    is merged; the mesh route follows when every zone has it (new instances before traffic)."""

    canary: specs.FederatedCanary
    action: SetWeights
    waiting: dict[str, str]  # zone -> our commit on its branch
    mesh_done: bool


class FleetAdapters:
    def __init__(self, fleet: specs.Fleet, workdir: Path) -> None:
        self.fleet = fleet
        self.workdir = Path(workdir)
        self.pool = ssh.Pool()
        m = fleet.spec.mesh
        self.repos: dict[str, gitrepo.Repo] = {
            name: gitrepo.Repo(src.url, src.branch, self.workdir / "repos" / name, gitrepo.Credentials(src.auth),
                               signing_key=src.signing.key if src.signing else None,
                               signing_format=src.signing.format.value if src.signing else "ssh")
            for name, src in [*((z.name, z.git) for z in fleet.spec.zones), (MESH, m.git)]
        }
        self.zones = {z.name: VmZone(z, self.pool) for z in fleet.spec.zones if z.kind is specs.ZoneKind.VM}
        self.kube: dict[str, kube.FluxZone] = {}
        for z in fleet.spec.zones:
            if z.kind is specs.ZoneKind.KUBERNETES:
                f = z.flux or specs.FluxRef()
                ks = f.kustomization or z.name
                self.kube[z.name] = kube.FluxZone(kube.Api(kube.api_client(z.kubeconfig)), f.namespace, ks,
                                                  f.git_repository or ks)
        self.edge: EnvoyEdge | None = None
        self.route: EdgeRoute | KubeRoute
        if m.provider is specs.MeshProvider.ENVOY:
            if m.edge is None:
                raise PermanentError("mesh.provider envoy: the hub runs the edge Envoy, so mesh.edge (rdsPath, admin) "
                                     "is required")
            self.edge = EnvoyEdge(m.edge)
            self.route = EdgeRoute(self.edge)
        else:
            if m.kubeconfig is None:
                raise PermanentError(f"mesh.provider {m.provider.value}: mesh.kubeconfig (the mesh's global control "
                                     f"plane) is required to {'apply' if m.apply is specs.MeshApply.DIRECT else 'observe'} "
                                     "routes")
            mesh_api = kube.Api(kube.api_client(m.kubeconfig))
            flux = None
            if m.apply is specs.MeshApply.GITOPS:
                fr = m.flux or specs.FluxRef()
                ks = fr.kustomization or MESH
                flux = kube.FluxZone(mesh_api, fr.namespace, ks, fr.git_repository or ks)
            self.route = KubeRoute(m, mesh_api, flux,
                                   lambda rollout, rev, step: self.step_of_revision(MESH, rollout, rev, step))
        self.analyzer = Analyzer(fleet)
        self.deferred: dict[str, Deferred] = {}  # rollout -> its step waiting for merges

    async def sync(self, names: list[str] | None = None) -> None:
        names = names or list(self.repos)
        await asyncio.gather(*[asyncio.to_thread(self.repos[n].ensure) for n in names])
        self.analyzer.templates = self.metric_templates()

    async def close(self) -> None:
        await self.pool.close()
        for z in self.kube.values():
            z.api.close()
        if isinstance(self.route, KubeRoute):
            self.route.api.close()

    # -- reading ---------------------------------------------------------------------------

    def mesh_path(self, *parts: str) -> str:
        base = self.fleet.spec.mesh.git.path
        return "/".join(p for p in (base, *parts) if p and p != ".")

    def canaries(self) -> dict[str, tuple[str, specs.FederatedCanary | None, str]]:
        """FederatedCanary specs in the mesh repo: key -> (path, spec or None, problem)."""
        mesh = self.repos[MESH]
        out: dict[str, tuple[str, specs.FederatedCanary | None, str]] = {}
        for path in mesh.files(self.mesh_path("canaries")):
            try:
                docs = specfiles.load(mesh.workdir / path)
            except FederationError as exc:
                out[path] = (path, None, str(exc))
                continue
            for d in docs:
                if isinstance(d, specs.FederatedCanary):
                    problems = specs.check_against_fleet(d, self.fleet)
                    problem = "; ".join(f"{path}: {f}: {m}" for f, m in problems)
                    if not problems:
                        try:
                            d.spec.with_checksum(self.canary_checksum(d.spec))
                        except FederationError as exc:
                            problem = str(exc)
                    out[d.key] = (path, None if problem else d, problem)
        return out

    def canary_checksum(self, spec: specs.CanarySpec) -> str:
        """Digest of the canary version as each canary zone's repo defines it (image, artifact,
        command, env, replicas...): a bump there is a new revision of the canary, which (re)starts
        its rollout. Zones without the definition count as such (the step then fails loudly)."""
        definitions: dict[str, Any] = {}
        for z in sorted(spec.canary.zones):
            found = self.zone_release(z, spec.service.name)
            definitions[z] = ((found[1].get("spec") or {}).get("versions") or {}).get(spec.canary.version) if found else None
        raw = json.dumps(definitions, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(raw.encode()).hexdigest()[:12]

    def metric_templates(self) -> dict[str, str]:
        """Flagger MetricTemplate documents under the mesh repo's templates/: name -> query."""
        mesh = self.repos[MESH]
        out: dict[str, str] = {}
        for path in mesh.files(self.mesh_path("templates")):
            text = mesh.read(path) or ""
            try:
                docs = specfiles.parse_documents(text, path)
            except FederationError:
                continue
            for d in docs:
                if isinstance(d, dict) and d.get("kind") == "MetricTemplate":
                    name = (d.get("metadata") or {}).get("name")
                    query = (d.get("spec") or {}).get("query")
                    if name and query:
                        out[str(name)] = str(query)
        return out

    def zone_release(self, zone: str, service: str) -> tuple[str, dict[str, Any]] | None:
        repo = self.repos[zone]
        for path in repo.files(self.fleet.zone(zone).git.path):
            for doc in specfiles.parse_documents(repo.read(path) or "", path):
                if isinstance(doc, dict) and doc.get("kind") == "ZoneRelease" and \
                        (doc.get("spec") or {}).get("service") == service:
                    return path, doc
        return None

    def zone_manifests(self, zone: str) -> list[Any]:
        repo = self.repos[zone]
        out: list[Any] = []
        for path in repo.files(self.fleet.zone(zone).git.path):
            out.extend(d for d in specfiles.parse_documents(repo.read(path) or "", path)
                       if isinstance(d, dict) and d.get("kind") == "ZoneRelease")
        return out

    # -- observing -------------------------------------------------------------------------

    async def observe_zones(self, zones: list[str], canary: specs.FederatedCanary | None = None,
                            step: int = 0) -> dict[str, ZoneStatus | KubeZoneStatus]:
        if canary is not None and canary.key in self.deferred:
            await self.advance_merges(canary.key)

        async def one(z: str) -> ZoneStatus | KubeZoneStatus:
            if z in self.kube:
                assert canary is not None
                return await self.observe_kube(z, canary, step)
            return await self.zones[z].observe()

        results = await asyncio.gather(*[one(z) for z in zones])
        return dict(zip(zones, results, strict=True))

    async def observe_kube(self, zone: str, canary: specs.FederatedCanary, step: int) -> KubeZoneStatus:
        """Flux's applied revision mapped to our steps, and Deployment readiness per version."""
        fz = self.kube[zone]
        spec = canary.spec
        ns = (self.fleet.zone(zone).flux or specs.FluxRef()).workload_namespace or canary.metadata.namespace
        try:
            st = await fz.status()
        except FederationError as exc:
            return KubeZoneStatus(zone, None, {}, str(exc))
        applied = await asyncio.to_thread(self.step_of_revision, zone, canary.key, st.revision, step) if st.ready else None
        ready: dict[str, float | None] = {}
        stalled: dict[str, str] = {}
        reasons = [f"Flux: {st.reason}: {st.message}"] if st.failing else []
        for version, threshold in ((spec.primary.version, spec.analysis.primary_ready_threshold),
                                   (spec.canary.version, spec.analysis.canary_ready_threshold)):
            try:
                pct, why = await fz.deployment_ready(ns, f"{spec.service.name}-{version}", threshold)
            except FederationError as exc:
                pct, why = None, str(exc)
            ready[version] = pct
            if why:
                reasons.append(why)
            if kube.PROGRESS_DEADLINE in why:
                stalled[version] = why
        return KubeZoneStatus(zone, applied, ready, "; ".join(reasons), stalled)

    def step_of_revision(self, zone: str, rollout: str, revision: str | None, step: int) -> int | None:
        """The step a zone's applied Git revision reaches: ``step`` once it holds the newest commit
        of ours at or before it, else the newest of our steps it does hold."""
        if revision is None:
            return None
        repo = self.repos[zone]
        ours = [(r.step, c.sha) for c in repo.log(200) if (r := c.record) is not None and r.rollout == rollout]
        needed = next((sha for n, sha in ours if n <= step), None)
        if needed is None or repo.contains(revision, needed):
            return step
        for n, sha in ours:
            if repo.contains(revision, sha):
                return n
        return 0

    async def edge_step(self, rollout: str, service: str) -> int | None:
        """The step the hub-managed Envoy edge runs for ``rollout`` (provider envoy)."""
        if self.edge is None:
            raise PermanentError("this fleet's mesh has no hub-managed edge")
        return await self.route.step(rollout, service, 0)

    async def mesh_step(self, canary: specs.FederatedCanary, step: int) -> int | None:
        """The step the mesh route is live at: the edge's, Flux's on the global control plane, or
        what the applied objects carry (direct mode)."""
        return await self.route.step(canary.key, canary.spec.service.name, step)

    def last_step(self, rollout: str) -> gitrepo.CommitInfo | None:
        """The newest step Git holds for ``rollout``: the mesh repo (every step commits there), or a
        pull-request branch (or its merge) of a zone repo, for a step whose mesh part waits."""
        found = [c for c in [self.repos[MESH].last_step(rollout)] if c is not None]
        for z in self.fleet.spec.zones:
            if z.git.pull_request:
                repo = self.repos[z.name]
                found += [c for c in [repo.last_step(rollout)] if c is not None]
                found += [c for c in repo.branch_heads(f"federation/{rollout}/")
                          if c.record is not None and c.record.rollout == rollout]
        return max(found, key=lambda c: c.record.step if c.record else -1, default=None)

    # -- acting ----------------------------------------------------------------------------

    def route_request(self, canary: specs.FederatedCanary, action: SetWeights) -> RouteRequest:
        s = canary.spec
        return RouteRequest(
            service=s.service.name, namespace=canary.metadata.namespace, port=s.service.port,
            primary_version=s.primary.version, canary_version=s.canary.version, weights=action.weights,
            step=action.step, rollout=canary.key, mirror_weight=action.mirror_weight, matched=action.matched,
            match=tuple(s.analysis.match or ()), session_affinity=s.analysis.session_affinity,
            zones=tuple(self.fleet.zone_names),
        )

    def message(self, canary: specs.FederatedCanary, action: SetWeights) -> str:
        record = steps.StepRecord.of(canary.key, canary.spec, action)
        return record.message(canary.spec.service.name, canary.spec.canary.version, action.reason)

    def _edit_zone(self, zone: str, canary: specs.FederatedCanary, action: SetWeights) -> Any:
        service = canary.spec.service.name
        weights = {s.version: w for s, w in action.weights if s.zone == zone}
        retire = {s.version for s in action.retire if s.zone == zone}

        def edit(repo: gitrepo.Repo) -> list[str]:
            found = self.zone_release(zone, service)
            if found is None:
                raise PermanentError(f"zone {zone}: no ZoneRelease for service {service!r} under "
                                     f"{self.fleet.zone(zone).git.path!r} in {repo.url}")
            path, doc = found
            known = set(doc["spec"].get("versions") or {})
            missing = [v for v in weights if v not in known and v not in retire]
            if missing:
                raise PermanentError(f"zone {zone}: {path} does not define version(s) {', '.join(missing)} "
                                     "under spec.versions")
            text = repo.read(path) or ""
            serving = dict(doc["spec"].get("serving") or {})
            for v, w in weights.items():
                serving[v] = w
            for v in retire:
                serving.pop(v, None)
            new = specfiles.replace_mapping(text, ("spec", "serving"), serving)
            (repo.workdir / path).write_text(new, encoding="utf-8")
            return [path]

        return edit

    def _edit_mesh(self, req: RouteRequest, docs: list[dict[str, Any]] | None = None) -> Any:
        docs = docs if docs is not None else self.route.render(req)

        def edit(repo: gitrepo.Repo) -> list[str]:
            path = self.mesh_path("routes", f"{req.service}.yaml")
            target = repo.workdir / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(specfiles.dump(docs), encoding="utf-8")
            return [path]

        return edit

    async def _converge(self, zone: str, step: int) -> None:
        """Ask a zone to apply its repo's head now: the agents over SSH, or Flux by annotation."""
        if zone in self.kube:
            try:
                await self.kube[zone].request_reconcile()
            except FederationError as exc:  # Flux still reconciles on its own interval
                log.warning("zone %s: reconcile request failed: %s", zone, exc)
            return
        await self.zones[zone].apply(self.repos[zone].head(), step, self.zone_manifests(zone))

    async def commit(self, name: str, edit: Any, message: str, key: str, step: int,
                     expect: dict[str, str] | None = None, branch: str | None = None) -> str | None:
        repo = self.repos[name]
        return await asyncio.to_thread(repo.commit_and_push, edit, message, idempotency=(key, step), expect=expect,
                                       branch=branch)

    @staticmethod
    def expect(action: SetWeights) -> dict[str, str]:
        """What an existing commit of the same step must carry to count as this step (idempotency)."""
        return steps.StepRecord("", action.step, action.stage, action.canary_weight).identity()

    def pull_request(self, zone: str) -> bool:
        return self.fleet.zone(zone).git.pull_request

    @staticmethod
    def branch_for(key: str, step: int) -> str:
        return f"federation/{key}/step-{step}"

    async def advance_merges(self, key: str) -> None:
        """A deferred step: converge each zone whose branch was merged; once none is waiting, the
        mesh route (commit + edge). A branch not merged yet leaves the zone lagging: the rollout
        waits, and its progress deadline applies as to any zone that does not converge."""
        d = self.deferred[key]
        for zone, sha in list(d.waiting.items()):
            if not await asyncio.to_thread(self.repos[zone].merged, sha):
                continue
            log.info("%s: step %d merged in zone %s: applying", key, d.action.step, zone)
            del d.waiting[zone]
            await self._converge(zone, d.action.step)
        if not d.waiting:
            if not d.mesh_done:
                await self._mesh(d.canary, d.action, {}, wait=False)
            del self.deferred[key]

    async def _mesh(self, canary: specs.FederatedCanary, action: SetWeights, commits: dict[str, str], wait: bool,
                    edge_timeout: float = 15.0) -> None:
        key = canary.key
        req = self.route_request(canary, action)
        docs = self.route.render(req)
        sha = await self.commit(MESH, self._edit_mesh(req, docs), self.message(canary, action), key, action.step,
                                self.expect(action))
        if sha:
            commits[MESH] = sha
        await self.route.apply(docs)
        if wait:
            # Retiring instances: the route must be live without them first. A mesh applied by Flux
            # may take longer than this; the tick then fails, and the next one (the commit found,
            # not redone) waits again.
            deadline = time.monotonic() + edge_timeout
            while (await self.mesh_step(canary, action.step) or 0) < action.step:
                if time.monotonic() > deadline:
                    raise TemporaryError(f"mesh route did not reach step {action.step} within {edge_timeout:g}s")
                await asyncio.sleep(0.05 if self.edge is not None else 0.5)

    async def apply_step(self, canary: specs.FederatedCanary, action: SetWeights) -> StepResult:
        """Commit and apply one step. Order keeps requests whole:

        without retirements, zones first (new instances come up at the weight they get) then the
        mesh; with retirements, the mesh first — and we wait until the edge runs it — so no request
        is sent to a zone whose instances are being stopped. A zone repo in pull-request mode gets
        the step on a branch; the zone (and, when zones go first, the mesh) follows once it is
        merged (``advance_merges``, on each observation).
        """
        key = canary.key
        zones = list(dict.fromkeys(canary.spec.primary.zones + canary.spec.canary.zones))
        message = self.message(canary, action)
        commits: dict[str, str] = {}
        waiting: dict[str, str] = {}
        expect = self.expect(action)
        self.deferred.pop(key, None)  # a newer step replaces one still waiting

        async def zone_step(z: str) -> None:
            branch = self.branch_for(key, action.step) if self.pull_request(z) else None
            sha = await self.commit(z, self._edit_zone(z, canary, action), message, key, action.step, expect, branch)
            if sha:
                commits[z] = sha
            if branch is not None and sha and not await asyncio.to_thread(self.repos[z].merged, sha):
                waiting[z] = sha
                log.info("%s: step %d for zone %s waits in branch %s to be merged", key, action.step, z, branch)
                return
            await self._converge(z, action.step)

        if action.retire:
            await self._mesh(canary, action, commits, wait=True)
            await asyncio.gather(*[zone_step(z) for z in zones])
            if waiting:
                self.deferred[key] = Deferred(canary, action, waiting, mesh_done=True)
        else:
            await asyncio.gather(*[zone_step(z) for z in zones])
            if waiting:
                self.deferred[key] = Deferred(canary, action, waiting, mesh_done=False)
            else:
                await self._mesh(canary, action, commits, wait=False)
        return StepResult(commits)
