"""A local stand-in for Flux on one zone (source-controller and kustomize-controller), for the
local Kubernetes API server (``demo.kubeapi``): plainly not Flux, but what the hub sees of Flux.

``reconcile`` is one pass: fetch the zone repo; when its head is new, or the GitRepository or the
Kustomization carries a ``reconcile.fluxcd.io/requestedAt`` not handled yet (the hub's "reconcile
now"), build the Kustomization's ``spec.path`` at the head (a kustomization's ``resources``: files,
or folders with their own kustomization; a folder without one: its YAML files), server-side apply
every object as the Kustomization's ``spec.serviceAccountName`` (impersonated, as
kustomize-controller does: that account's RBAC decides), prune what the last apply had and this
one has not (``prune: true``), and write both objects' status as Flux does — the GitRepository's
``artifact.revision`` and the Kustomization's ``lastAppliedRevision``/``lastAttemptedRevision``
as ``<branch>@sha1:<sha>``, ``Ready`` (and ``Stalled`` when the build fails), ``observedGeneration``,
``lastHandledReconcileAt``, the inventory. An object the API server refuses leaves the
Kustomization not Ready (``ReconciliationFailed``) at the last applied revision.
Callers: tests (Flux's part on a Kubernetes zone), the demo.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import posixpath
from dataclasses import dataclass, field
from typing import Any

from federation import specfiles
from federation.core.errors import FederationError
from federation.demo.kubeapi import APPLY, KubeStartError, LocalKube
from federation.gitops.repo import Repo

SOURCE = "source.toolkit.fluxcd.io/v1"
KUSTOMIZE = "kustomize.toolkit.fluxcd.io/v1"
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"


class BuildError(FederationError):
    """The path does not build (what Flux reports as BuildFailed, Stalled)."""


def build(repo: Repo, path: str) -> list[dict[str, Any]]:
    """The objects ``kustomize build`` gives for what the hub and the team write under ``path``."""
    def read(p: str) -> list[dict[str, Any]]:
        text = repo.read(p)
        if text is None:
            raise BuildError(f"{p}: no such file")
        try:
            docs = specfiles.parse_documents(text, p)
        except FederationError as exc:
            raise BuildError(str(exc)) from None
        if not all(isinstance(d, dict) for d in docs):
            raise BuildError(f"{p}: not a mapping")
        return docs

    def folder(d: str) -> list[dict[str, Any]]:
        k = posixpath.join(d, "kustomization.yaml")
        if repo.read(k) is not None:
            kust = read(k)[0]
            out: list[dict[str, Any]] = []
            for r in kust.get("resources") or []:
                p = posixpath.normpath(posixpath.join(d, str(r)))
                if repo.read(p) is not None:
                    out += read(p)
                elif (repo.workdir / p).is_dir():
                    out += folder(p)
                else:
                    raise BuildError(f"{k}: resource {r!r} not found")
            return out
        return [doc for f in repo.files(d) if posixpath.dirname(f) == d for doc in read(f)]

    if not (repo.workdir / path).is_dir():
        raise BuildError(f"path {path!r} not found")
    return folder(posixpath.normpath(path))


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(type_: str, status: str, reason: str, message: str) -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message[:1000],
            "lastTransitionTime": _now()}


def _id(doc: dict[str, Any]) -> tuple[str, str]:
    """Flux's inventory entry: ``<namespace>_<name>_<group>_<kind>`` and the version."""
    group, _, version = doc["apiVersion"].rpartition("/")
    meta = doc["metadata"]
    return f"{meta.get('namespace', '')}_{meta['name']}_{group}_{doc['kind']}", version


@dataclass
class LocalFlux:
    """Flux for one zone: a GitRepository and a Kustomization of the same name (``name``)."""

    kube: LocalKube
    repo: Repo  # a clone of the zone repo, this stand-in's own
    name: str
    namespace: str = "flux-system"
    applied: str | None = None  # the sha last applied
    handled: str = ""  # the last requestedAt handled
    inventory: dict[str, tuple[str, str, str | None, str]] = field(default_factory=dict)  # id -> (apiVersion, kind, ns, name)
    reconciles: int = 0

    def _get(self, api_version: str, kind: str) -> dict[str, Any]:
        r = self.kube.request("GET", self.kube.path(api_version, kind, self.namespace, self.name))
        if r.status_code != 200:
            raise FederationError(f"{kind} {self.namespace}/{self.name}: {r.status_code} {r.text[:200]}")
        return r.json()  # type: ignore[no-any-return]

    def _status(self, api_version: str, kind: str, status: dict[str, Any]) -> None:
        where = self.kube.path(api_version, kind, self.namespace, self.name) + "/status"
        r = self.kube.request("PATCH", where, {"status": status}, "application/merge-patch+json")
        if r.status_code >= 300:
            raise FederationError(f"{kind} {self.name} status: {r.status_code} {r.text[:300]}")

    def reconcile(self) -> bool:
        """One pass (see the module's docstring); whether it applied anything."""
        source, ks = self._get(SOURCE, "GitRepository"), self._get(KUSTOMIZE, "Kustomization")
        asked = max((o["metadata"].get("annotations") or {}).get(REQUESTED_AT, "") for o in (source, ks))
        self.repo.ensure()
        head = self.repo.head()
        if head == self.applied and asked == self.handled:
            return False
        self.reconciles += 1
        branch = (source.get("spec") or {}).get("ref", {}).get("branch", self.repo.branch)
        revision = f"{branch}@sha1:{head}"
        self._status(SOURCE, "GitRepository", {
            "observedGeneration": source["metadata"]["generation"], "lastHandledReconcileAt": asked or None,
            "artifact": {"revision": revision, "path": f"gitrepository/{self.namespace}/{self.name}/{head}.tar.gz",
                         "url": f"http://source-controller.{self.namespace}.svc/gitrepository/{self.name}/{head}.tar.gz",
                         "digest": "sha256:" + hashlib.sha256(head.encode()).hexdigest(), "lastUpdateTime": _now()},
            "conditions": [_condition("Ready", "True", "Succeeded", f"stored artifact for revision '{revision}'")]})
        spec = ks.get("spec") or {}
        base = {"observedGeneration": ks["metadata"]["generation"], "lastAttemptedRevision": revision,
                "lastHandledReconcileAt": asked or None}
        self.handled = asked
        try:
            docs = build(self.repo, posixpath.normpath(str(spec.get("path") or ".")))
        except BuildError as exc:
            self._status(KUSTOMIZE, "Kustomization", {**base, "conditions": [
                _condition("Ready", "False", "BuildFailed", f"kustomize build failed: {exc}"),
                _condition("Stalled", "True", "BuildFailed", f"kustomize build failed: {exc}")]})
            self.applied = head
            return False
        sa = spec.get("serviceAccountName")
        user = f"system:serviceaccount:{self.namespace}:{sa}" if sa else None
        try:
            now = self._apply(docs, user, prune=bool(spec.get("prune")))
        except FederationError as exc:
            self._status(KUSTOMIZE, "Kustomization", {**base, "conditions": [
                _condition("Ready", "False", "ReconciliationFailed", str(exc)),
                _condition("Stalled", "False", "ReconciliationFailed", "retrying")]})
            self.applied = head
            return False
        self.inventory = now
        self.applied = head
        self._status(KUSTOMIZE, "Kustomization", {**base, "lastAppliedRevision": revision,
                                                  "inventory": {"entries": [{"id": i, "v": v[0].rpartition("/")[2]}
                                                                            for i, v in sorted(now.items())]},
                                                  "conditions": [
                                                      _condition("Ready", "True", "ReconciliationSucceeded",
                                                                 f"Applied revision: {revision}"),
                                                      _condition("Stalled", "False", "ReconciliationSucceeded", "")]})
        return True

    def _apply(self, docs: list[dict[str, Any]], user: str | None,
               prune: bool) -> dict[str, tuple[str, str, str | None, str]]:
        headers = {"Impersonate-User": user} if user else {}
        now: dict[str, tuple[str, str, str | None, str]] = {}
        for d in docs:
            meta = d.get("metadata") or {}
            try:
                where = self.kube.path(d["apiVersion"], d["kind"], meta.get("namespace"), meta["name"])
            except (KeyError, KubeStartError) as exc:
                raise FederationError(f"{d.get('kind')} {meta.get('name')}: {exc}") from None
            r = self.kube.client.patch(where, content=specfiles.dump([d]).encode(),
                                       params={"fieldManager": "kustomize-controller", "force": "true"},
                                       headers={"Content-Type": APPLY, "Accept": "application/json", **headers})
            if r.status_code >= 300:
                try:
                    msg = r.json().get("message", r.text)
                except ValueError:
                    msg = r.text
                raise FederationError(f"{d['kind']}/{meta.get('namespace', '')}/{meta['name']} dry-run failed "
                                      f"({r.status_code}): {msg}"[:900])
            i, _ = _id(d)
            now[i] = (d["apiVersion"], d["kind"], meta.get("namespace"), meta["name"])
        if prune:
            for i, (api_version, kind, ns, name) in sorted(self.inventory.items()):
                if i in now:
                    continue
                r = self.kube.client.delete(self.kube.path(api_version, kind, ns, name), headers=headers)
                if r.status_code not in (200, 202, 404):
                    raise FederationError(f"prune {kind}/{ns}/{name}: {r.status_code} {r.text[:300]}")
        return now
