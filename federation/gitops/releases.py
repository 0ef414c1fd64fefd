"""``ZoneRelease`` files in zone repos: found, edited in place (only ``spec.serving``), digested.

Humans own ``spec.versions`` (how each version runs); the hub edits only ``spec.serving`` (which
versions run, at which weights), comments and formatting kept. In a Kubernetes zone a version may
name a Deployment template the team owns in the same repo (``template``, a path from the
ZoneRelease's folder): ``read_template`` finds and checks it. ``checksum`` digests the canary
version's definitions across its zones, a template's pod template included (Flagger's pod-template
checksum). Callers: ``runtimes`` (a zone's step commit and manifests), ``gitops.meshrepo``
(discovery's checksums).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Mapping
from typing import Any

from federation import specfiles
from federation.core import spec as specs
from federation.core.errors import FederationError, PermanentError
from federation.core.steps import StepRecord
from federation.gitops.aio import AsyncRepo, Edit
from federation.gitops.repo import Repo

KIND = "ZoneRelease"


def find(repo: Repo, under: str, service: str) -> tuple[str, dict[str, Any]] | None:
    """The ZoneRelease of ``service`` under ``under``: (path, document).

    A malformed file elsewhere under ``under`` (another team's release, a YAML typo) does not hide
    this service's release; only when the service's release is not found among the readable files
    is the first unreadable one named (it may be the one that was meant)."""
    broken: list[str] = []
    for path in repo.files(under):
        try:
            docs = specfiles.parse_documents(repo.read(path) or "", path)
        except FederationError as exc:
            broken.append(str(exc))
            continue
        for doc in docs:
            if isinstance(doc, dict) and doc.get("kind") == KIND and (doc.get("spec") or {}).get("service") == service:
                return path, doc
    if broken:
        raise PermanentError(f"no readable {KIND} for service {service!r} under {under!r}; "
                             f"{len(broken)} file(s) unreadable, first: {broken[0]}")
    return None


def manifests(repo: Repo, under: str) -> list[Any]:
    """Every ZoneRelease under ``under`` (what a VM zone's agents are sent)."""
    out: list[Any] = []
    for path in repo.files(under):
        out.extend(d for d in specfiles.parse_documents(repo.read(path) or "", path)
                   if isinstance(d, dict) and d.get("kind") == KIND)
    return out


def definition(repo: Repo, under: str, service: str, version: str) -> Any:
    """How ``version`` runs in this zone (its ``spec.versions`` entry), None when not defined."""
    found = find(repo, under, service)
    return ((found[1].get("spec") or {}).get("versions") or {}).get(version) if found else None


TEMPLATE = "template"


def template_path(zone: str, zrel_path: str, version: str, ref: Any) -> str:
    """Where a version's ``template`` points: relative to its ZoneRelease's folder, inside the repo."""
    where = f"zone {zone}: {zrel_path}: spec.versions.{version}.{TEMPLATE}"
    if not isinstance(ref, str) or not ref.strip() or posixpath.isabs(ref):
        raise PermanentError(f"{where}: a path in the zone repo, relative to {zrel_path}'s folder")
    path = posixpath.normpath(posixpath.join(posixpath.dirname(zrel_path), ref))
    if path == ".." or path.startswith("../"):
        raise PermanentError(f"{where}: {ref!r} leaves the zone repo")
    return path


def read_template(repo: Repo, zone: str, zrel_path: str, version: str, ref: Any) -> tuple[str, dict[str, Any]]:
    """A version's Deployment template (path, document): one ``apps/v1`` Deployment whose pod
    template has at least one container with an image. Anything else is one line naming the file
    and the field."""
    path = template_path(zone, zrel_path, version, ref)
    text = repo.read(path)
    if text is None:
        raise PermanentError(f"zone {zone}: {zrel_path}: spec.versions.{version}.{TEMPLATE}: {path} not found")
    docs = [d for d in specfiles.parse_documents(text, path) if d is not None]
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise PermanentError(f"zone {zone}: {path}: a Deployment template holds exactly one Deployment "
                             f"(found {len(docs)} document(s))")
    doc = docs[0]
    if doc.get("apiVersion") != "apps/v1" or doc.get("kind") != "Deployment":
        raise PermanentError(f"zone {zone}: {path}: kind: expected an apps/v1 Deployment, got "
                             f"{doc.get('apiVersion')}/{doc.get('kind')}")
    spec = doc.get("spec")
    pod = ((spec or {}).get("template") or {}).get("spec") if isinstance(spec, dict) else None
    containers = pod.get("containers") if isinstance(pod, dict) else None
    if not isinstance(containers, list) or not containers:
        raise PermanentError(f"zone {zone}: {path}: spec.template.spec.containers: required (at least one)")
    for i, c in enumerate(containers):
        if not isinstance(c, dict) or not isinstance(c.get("image"), str) or not c["image"]:
            raise PermanentError(f"zone {zone}: {path}: spec.template.spec.containers[{i}].image: required")
    return path, doc


def resolved_definition(repo: Repo, under: str, service: str, version: str) -> Any:
    """``definition`` with a ``template`` reference replaced by the template's pod template (what
    Flagger's checksum covers: a new image in the team's Deployment file is a new revision; its
    replicas are not). A template that cannot be read counts by its problem (the step says it)."""
    found = find(repo, under, service)
    if found is None:
        return None
    zrel_path, doc = found
    d = ((doc.get("spec") or {}).get("versions") or {}).get(version)
    if not isinstance(d, dict) or TEMPLATE not in d:
        return d
    try:
        path, tmpl = read_template(repo, "", zrel_path, version, d[TEMPLATE])
        return {**d, TEMPLATE: {"path": path, "pod": tmpl["spec"]["template"]}}
    except FederationError as exc:
        return {**d, TEMPLATE: {"problem": str(exc)}}


def checksum(definitions: Mapping[str, Any]) -> str:
    """Digest of a version's definitions per zone: a change there is a new revision of it."""
    raw = json.dumps(dict(sorted(definitions.items())), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def edit_serving(zone: str, under: str, service: str, record: StepRecord) -> Edit:
    """The edit that puts ``record``'s weights for ``zone`` into its ZoneRelease (re-run on a fresh
    head after a rejected push, so a human's change underneath is kept)."""
    weights = {s.version: w for s, w in record.weights if s.zone == zone}
    retire = {s.version for s in record.retire if s.zone == zone}

    def edit(repo: Repo) -> list[str]:
        found = find(repo, under, service)
        if found is None:
            raise PermanentError(f"zone {zone}: no {KIND} for service {service!r} under {under!r} in {repo.url}")
        path, doc = found
        known = set(doc["spec"].get("versions") or {})
        missing = [v for v in weights if v not in known and v not in retire]
        if missing:
            raise PermanentError(f"zone {zone}: {path} does not define version(s) {', '.join(missing)} "
                                 "under spec.versions")
        for v in sorted(set(weights) - retire):  # a typo (``replica:``) would silently run the default
            problems = specfiles.check(specs.ZoneVersion, doc["spec"]["versions"][v], path, f"spec.versions.{v}")
            if problems:
                raise PermanentError(f"zone {zone}: {problems[0]}")
        serving = dict(doc["spec"].get("serving") or {})
        serving.update(weights)
        for v in retire:
            serving.pop(v, None)
        new = specfiles.replace_mapping(repo.read(path) or "", ("spec", "serving"), serving)
        repo.write(path, new)  # refuses a symlink at the path or on the way
        return [path]

    return edit


async def commit_step(repo: AsyncRepo, zone: str, service: str, record: StepRecord, message: str,
                      branch: str | None = None, edit: Edit | None = None) -> str | None:
    """One step's commit in a zone repo (on ``branch`` in pull-request mode); None: nothing changed.
    ``edit`` replaces the serving edit (a Kubernetes zone's also writes the workloads)."""
    return await repo.commit(edit or edit_serving(zone, repo.path, service, record), message,
                             (record.rollout, record.step), record.identity(), branch)
