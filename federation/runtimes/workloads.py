"""Kubernetes workloads of a zone, rendered from its ZoneRelease: what Flux applies for each version.

A ``ZoneRelease`` version in a ``kind: kubernetes`` zone describes its workload (``Workload``:
image, replicas, args, env, ports, probes, resources), or names a Deployment template the team owns
in the zone repo (``template``): the hub then renders that Deployment, keeping its own name,
namespace, labels and selector, and the team's pod spec, strategy and replicas as written (a human
commit bumping the image there is a new revision, ``releases.resolved_definition``). For every version the zone serves, the hub
renders a Deployment and a Service named ``<service>-<version>`` (labels ``app``/``version``, the
ones the mesh and the routers select on), the service's own Service ``<service>`` over them (what
the meshes route for), and — where the zone's mesh splits locally — the split
itself (a Gateway API HTTPRoute in Linkerd's flavour, or an SMI TrafficSplit, through
``routers``), into ``<flux path>/<service>/`` with the kustomization that lists them. The
directory is the hub's; the zone's top ``kustomization.yaml`` is the team's, and only gains an
entry for the service (round-trip edit, comments kept). A version no longer served (retired after
promotion or rollback) loses its files in that step's commit, so Flux (``prune: true``) removes its
workload; its pods keep serving ``shutdownDelaySeconds`` (default 10) after their deletion, a
``preStop`` sleep, while the zone's mesh applies the route without them. Rendering is pure: the same definition gives the same Deployment at every step, so a
weight step never restarts a pod; a change of definition (a new image) is a new revision.
Callers: ``runtimes.flux.KubeZone`` (each step's commit), tests.
"""

from __future__ import annotations

import copy
import math
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from federation import specfiles
from federation.core import spec as specs
from federation.core.errors import PermanentError
from federation.core.steps import StepRecord
from federation.core.weights import Subset
from federation.gitops import releases
from federation.gitops.aio import Edit
from federation.gitops.repo import Repo
from federation.routers import factory
from federation.routers.model import RouteRequest

MANAGED_BY = {"app.kubernetes.io/managed-by": "federation"}
KUSTOMIZATION = "kustomization.yaml"


# A version's workload is its ZoneRelease definition (``core.spec.ZoneVersion``: the fields of every
# zone kind, unknown ones refused). Fields the VM agents read (``command``, ``health``...) sit beside
# the Kubernetes ones: ``health`` is the readiness path when ``probes`` has none; ``command`` is for
# VM zones (the container keeps its image's entrypoint; ``args`` go to it). With ``template`` (a
# Deployment file in the zone repo) the pod is the template's: the fields only a Kubernetes zone
# reads (``POD_FIELDS``) are refused beside it, and those VM zones share (``replicas``, ``env``,
# ``health``, ``command``) are theirs alone.
Port = specs.ZonePort
Probe = specs.ZoneProbe
Probes = specs.ZoneProbes
Resources = specs.ZoneResources
Workload = specs.ZoneVersion


# What a Deployment template already says: refused beside ``template`` (which one would win?).
POD_FIELDS = ("image", "args", "ports", "probes", "resources", "progressDeadlineSeconds", "serviceAccountName",
              "shutdownDelaySeconds")
# After a pod's shutdown delay (its preStop sleep) and SIGTERM, what its app has to end before SIGKILL
# (Kubernetes' default grace period).
STOP_GRACE_SECONDS = 30


def workload(zone: str, path: str, version: str, definition: Any) -> Workload:
    """A version's definition as a workload; bad input is one line naming the file and the field."""
    d = definition if isinstance(definition, dict) else {}
    where = f"zone {zone}: {path}: spec.versions.{version}"
    problems = specfiles.check(Workload, d, path, f"spec.versions.{version}")
    if problems:
        p = problems[0]
        msg = "required in a kubernetes zone" if p.message == "required field is missing" else p.message
        raise PermanentError(f"zone {zone}: {p.file}: {p.field}: {msg}")
    w = Workload.model_validate(d)
    if w.template is None and w.image is None:
        raise PermanentError(f"{where}.image: required in a kubernetes zone (or a Deployment template: "
                             f"spec.versions.{version}.template)")
    if w.template is not None:
        both = [f for f in POD_FIELDS if f in d]
        if both:
            raise PermanentError(f"{where}.{both[0]}: set in the Deployment template ({w.template}), not beside it")
    return w


@dataclass(frozen=True)
class Target:
    """Where and how one zone's workloads of one service are rendered."""

    zone: str
    service: str
    namespace: str
    port: int  # the Service port (the FederatedCanary's service.port)
    route: specs.ZoneRouteKind = specs.ZoneRouteKind.NONE
    container_port: int | None = None  # when a version names no ports (default: ``port``)
    follow_weight: bool = False  # replicas follow the version's share of the zone's traffic

    @property
    def labels(self) -> dict[str, str]:
        return {"app": self.service}

    def name(self, version: str) -> str:
        return f"{self.service}-{version}"


def _probe(p: Probe, port: int | str) -> dict[str, Any]:
    return {"httpGet": {"path": p.path, "port": p.port if p.port is not None else port},
            "initialDelaySeconds": p.initial_delay_seconds, "periodSeconds": p.period_seconds,
            "timeoutSeconds": p.timeout_seconds, "failureThreshold": p.failure_threshold}


def version_labels(t: Target, version: str) -> dict[str, str]:
    """What a version's pods carry and its Service selects (the mesh and the routers select on them)."""
    return {**t.labels, "version": version}


def _service(t: Target, meta: dict[str, Any], labels: dict[str, str], target_port: int | str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"selector": labels, "ports": [{"name": "http", "port": t.port, "targetPort": target_port,
                                                    "protocol": "TCP"}]}}


def render_templated(t: Target, version: str, template: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The Deployment and the Service of a version whose Deployment the team writes (a template
    checked by ``releases.read_template``): the team's spec (pod, strategy, replicas) as written;
    the hub's name, namespace, labels (beside the team's) and selector, so the mesh, the routers
    and the readiness check find it as any version's. The Service targets the first container's
    first port (by name when it has one)."""
    labels = version_labels(t, version)
    src = copy.deepcopy(dict(template))
    meta_in = src.get("metadata") or {}
    meta: dict[str, Any] = {"name": t.name(version), "namespace": t.namespace,
                            "labels": {**(meta_in.get("labels") or {}), **labels, **MANAGED_BY}}
    if meta_in.get("annotations"):
        meta["annotations"] = meta_in["annotations"]
    spec = dict(src["spec"])
    pod_meta = dict(spec["template"].get("metadata") or {})
    pod_meta["labels"] = {**(pod_meta.get("labels") or {}), **labels}
    spec["template"] = {**spec["template"], "metadata": pod_meta}
    spec["selector"] = {"matchLabels": labels}
    ports = spec["template"]["spec"]["containers"][0].get("ports") or []
    first: int | str = (ports[0].get("name") or ports[0].get("containerPort")) if ports else \
        (t.container_port or t.port)
    return [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec},
            _service(t, {k: v for k, v in meta.items() if k != "annotations"}, labels, first)]


def image_of(w: Workload, template: Mapping[str, Any] | None) -> str | None:
    """The image a version's Deployment runs (its first container's)."""
    if template is not None:
        return str(template["spec"]["template"]["spec"]["containers"][0]["image"])
    return w.image


def render_version(t: Target, version: str, w: Workload,
                   template: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The Deployment and the Service of one version (``template``: the version's Deployment
    template, read from the zone repo, when its definition names one)."""
    if template is not None:
        return render_templated(t, version, template)
    labels = version_labels(t, version)
    ports = w.ports or [Port(name="http", container_port=t.container_port or t.port)]
    first: int | str = ports[0].name
    container: dict[str, Any] = {"name": t.service, "image": w.image,
                                 "ports": [{"name": p.name, "containerPort": p.container_port, "protocol": p.protocol}
                                           for p in ports]}
    if w.args is not None:
        container["args"] = list(w.args)
    if w.env:
        container["env"] = [{"name": k, "value": str(v).lower() if isinstance(v, bool) else str(v)}
                            for k, v in sorted(w.env.items())]
    probes = w.probes or Probes()
    readiness = probes.readiness or (Probe(path=w.health) if w.health else None)
    for key, probe in (("readinessProbe", readiness), ("livenessProbe", probes.liveness),
                       ("startupProbe", probes.startup)):
        if probe is not None:
            container[key] = _probe(probe, first)
    if w.resources is not None:
        container["resources"] = {k: {n: str(q) for n, q in v.items()}
                                  for k, v in (("requests", w.resources.requests), ("limits", w.resources.limits)) if v}
    if w.shutdown_delay_seconds:
        # A retired version's pods keep serving this long after Flux deletes them, before their
        # SIGTERM: the step that takes the version's weight to 0 deletes it too, and the zone's mesh
        # applies the new route and sees the pods go at its own pace.
        container["lifecycle"] = {"preStop": {"sleep": {"seconds": w.shutdown_delay_seconds}}}
    pod: dict[str, Any] = {"containers": [container]}
    if w.shutdown_delay_seconds:
        pod["terminationGracePeriodSeconds"] = w.shutdown_delay_seconds + STOP_GRACE_SECONDS
    if w.service_account_name:
        pod["serviceAccountName"] = w.service_account_name
    spec: dict[str, Any] = {"replicas": w.replicas, "selector": {"matchLabels": labels},
                            "template": {"metadata": {"labels": labels}, "spec": pod}}
    if w.progress_deadline_seconds is not None:
        spec["progressDeadlineSeconds"] = w.progress_deadline_seconds
    meta = {"name": t.name(version), "namespace": t.namespace, "labels": {**labels, **MANAGED_BY}}
    return [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec},
            _service(t, meta, labels, first)]


def render_route(t: Target, serving: Mapping[str, int], record: StepRecord) -> list[dict[str, Any]]:
    """The zone's split between its versions (none where the global route names every backend).
    A zone every version of which has weight 0 splits evenly, so a zone the global route starts
    sending to never answers 503."""
    if t.route is specs.ZoneRouteKind.NONE or not serving:
        return []
    weights = dict(serving) if any(serving.values()) else {v: 1 for v in serving}
    target = record.target
    req = RouteRequest(
        service=t.service, namespace=t.namespace, port=t.port,
        primary_version=target.primary_version if target else "", canary_version=target.canary_version if target else "",
        weights=tuple(sorted((Subset(t.zone, v), w) for v, w in weights.items())), step=record.step,
        rollout=record.rollout, zones=(t.zone,), local_zone=t.zone,
        canary_zones=tuple(target.canary_zones) if target else ())
    docs = factory.render("linkerd" if t.route is specs.ZoneRouteKind.HTTPROUTE else "smi", req)
    for d in docs:
        d["metadata"]["name"] = f"{t.service}-{t.zone}"
        d["metadata"]["labels"] = {**MANAGED_BY, "federation.io/step": str(record.step)}
    return docs


def render_service(t: Target, target_port: int | str) -> dict[str, Any]:
    """The service's own Service ``<service>`` over every version: the name the meshes route for
    (Kuma's MeshService, Istio's host, the parent of a Linkerd HTTPRoute, an SMI root service)."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": t.service, "namespace": t.namespace, "labels": {**t.labels, **MANAGED_BY}},
            "spec": {"selector": t.labels, "ports": [{"name": "http", "port": t.port, "targetPort": target_port,
                                                      "protocol": "TCP"}]}}


def share(serving: Mapping[str, int], version: str) -> float:
    """A version's share of the zone's traffic (0..1) from the zone's serving weights; a zone whose
    versions all have weight 0 splits evenly (as its local route does)."""
    total = sum(serving.values())
    if not serving or version not in serving:
        return 0.0
    return serving[version] / total if total else 1.0 / len(serving)


def scaled_replicas(full: int, before: Mapping[str, int], after: Mapping[str, int], version: str) -> int:
    """Replicas of a version whose replicas follow its weight: its full replicas times its share of
    the zone's traffic, rounded up, at least 1 (a canary at weight 0 is running and ready before it
    gets traffic) and at most ``full``. The share is the larger of the step's and the previous
    step's: the zone's commit lands before the mesh moves traffic, so a version losing weight keeps
    the pods for what it still receives until the next step, and one gaining weight has them ready
    before the traffic arrives."""
    if full <= 0:
        return full
    s = max(share(before, version), share(after, version))
    return min(full, max(1, math.ceil(full * s - 1e-9)))


def render(t: Target, zrel_path: str, versions: Mapping[str, Any], serving: Mapping[str, int],
           record: StepRecord, templates: Mapping[str, Mapping[str, Any]] | None = None,
           before: Mapping[str, int] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every file of the service's directory: file name -> documents (kustomization included).
    ``templates``: version -> its Deployment template, for the versions that name one; ``before``:
    the zone's serving before this step (with ``t.follow_weight``)."""
    files: dict[str, list[dict[str, Any]]] = {}
    for version in sorted(serving):
        w = workload(t.zone, zrel_path, version, versions.get(version))
        tmpl = (templates or {}).get(version)
        if w.template is not None and tmpl is None:
            raise PermanentError(f"zone {t.zone}: {zrel_path}: spec.versions.{version}.template: not read")
        docs = render_version(t, version, w, tmpl if w.template is not None else None)
        if t.follow_weight:
            spec = docs[0]["spec"]
            spec["replicas"] = scaled_replicas(int(spec.get("replicas", 1)), before or {}, serving, version)
        files[f"{t.name(version)}.yaml"] = docs
    if files:
        first = files[min(files)][1]["spec"]["ports"][0]["targetPort"]  # the versions' port name
        files[f"{t.service}.yaml"] = [render_service(t, first)]
    route = render_route(t, serving, record)
    if route:
        files[f"{t.service}-route.yaml"] = route
    files[KUSTOMIZATION] = [{"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                             "resources": sorted(files)}]
    return files


HEADER = ("# Written by the federation hub at each step from the ZoneRelease of {service}; edit that file "
          "(spec.versions),\n# not this one: the hub rewrites this directory and removes what is no longer served.\n")


def edit(t: Target, under: str, flux_path: str, record: StepRecord) -> Edit:
    """The step's edit of a Kubernetes zone repo: the ZoneRelease's ``spec.serving`` (as in every
    zone), then the workloads that serving implies, in the same commit."""
    serving_edit = releases.edit_serving(t.zone, under, t.service, record)
    base = posixpath.normpath(posixpath.join(under, flux_path))
    folder = posixpath.join(base, t.service)

    def run(repo: Repo) -> list[str]:
        previous = releases.find(repo, under, t.service)
        before = dict(((previous[1].get("spec") or {}).get("serving") or {}) if previous else {})
        changed = serving_edit(repo)
        found = releases.find(repo, under, t.service)
        if found is None:  # serving_edit has raised already
            return changed
        zrel_path, doc = found
        if posixpath.commonpath([zrel_path, base]) == base:
            raise PermanentError(f"zone {t.zone}: {zrel_path} is inside {base}, the path Flux applies: "
                                 "a ZoneRelease is not a Kubernetes kind; move it out")
        spec = doc.get("spec") or {}
        versions, serving = spec.get("versions") or {}, spec.get("serving") or {}
        templates = {}
        for version in serving:
            w = workload(t.zone, zrel_path, version, versions.get(version))
            if w.template is not None:
                path, tmpl = releases.read_template(repo, t.zone, zrel_path, version, w.template)
                if posixpath.commonpath([path, base]) == base:
                    raise PermanentError(f"zone {t.zone}: {zrel_path}: spec.versions.{version}.template: {path} is "
                                         f"inside {base}, the path Flux applies: it would be applied as it is; move it out")
                templates[version] = tmpl
        files = render(t, zrel_path, versions, serving, record, templates, before)
        wanted = {posixpath.join(folder, f) for f in files}
        for name, docs in files.items():
            path = posixpath.join(folder, name)
            text = HEADER.format(service=t.service) + specfiles.dump(docs)
            if repo.read(path) != text:
                target = repo.workdir / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
                changed.append(path)
        for path in repo.files(folder):
            if path not in wanted:
                (repo.workdir / path).unlink()
                changed.append(path)
        top = posixpath.join(base, KUSTOMIZATION)
        current = repo.read(top)
        new = specfiles.ensure_listed(current, "resources", t.service) if current is not None else (
            "# The zone's Kustomization (applied by Flux). The team owns this file; the hub only adds\n"
            "# the folder of each service it rolls out.\n"
            + specfiles.dump([{"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                               "resources": [t.service]}]))
        if new != current:
            (repo.workdir / top).parent.mkdir(parents=True, exist_ok=True)
            (repo.workdir / top).write_text(new, encoding="utf-8")
            changed.append(top)
        return changed

    return run
