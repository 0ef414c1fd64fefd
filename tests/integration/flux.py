"""Flux objects on the test API server, as the hub's tests need them: a Kustomization with its
GitRepository (valid against Flux's CRDs), and Flux reporting a revision applied through the status
subresource, as kustomize-controller writes it; plus a zone repo seeded from clusters/eks (v1, v2,
v3 defined, deploy/ the path Flux applies), and ``Applier``: kustomize-controller's part — build the
Kustomization's path at a revision, server-side apply it as the Kustomization's ServiceAccount
(clusters/hub/zone-flux.yaml), prune what it applied before and no longer builds."""

from __future__ import annotations

import posixpath
import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from federation.demo.kubeapi import APPLY, LocalKube
from federation.gitops import repo as gitrepo
from federation.runtimes import kubernetes as kube
from tests.real_kube import condition

ROOT = Path(__file__).resolve().parents[2]
NS = "flux-system"


def create(api: kube.Api, name: str) -> None:
    g, v, p = kube.FLUX_GIT
    api.custom.create_namespaced_custom_object(g, v, NS, p, {
        "apiVersion": f"{g}/{v}", "kind": "GitRepository", "metadata": {"name": name},
        "spec": {"interval": "1m", "url": f"https://git.example.invalid/{name}.git", "ref": {"branch": "main"}}})
    g, v, p = kube.FLUX_KS
    api.custom.create_namespaced_custom_object(g, v, NS, p, {
        "apiVersion": f"{g}/{v}", "kind": "Kustomization", "metadata": {"name": name},
        "spec": {"interval": "1m", "path": "./", "prune": True,
                 "sourceRef": {"kind": "GitRepository", "name": name}}})


def report(api: kube.Api, name: str, revision: str | None, ready: str = "True",
           reason: str = "ReconciliationSucceeded", stalled: bool = False, observed: int | None = None) -> None:
    """Kustomization ``name``'s status as Flux writes it: revision applied, Ready/Stalled, generation seen."""
    g, v, p = kube.FLUX_KS
    conds = [condition("Ready", ready, reason, f"{reason} msg")]
    if stalled:
        conds.append(condition("Stalled", "True", "BuildFailed", "kustomize build failed"))
    gen = api.custom.get_namespaced_custom_object(g, v, NS, p, name)["metadata"]["generation"]
    status = {"conditions": conds, "observedGeneration": gen if observed is None else observed}
    if revision:
        status["lastAppliedRevision"] = f"main@sha1:{revision}"
    api.custom.patch_namespaced_custom_object_status(g, v, NS, p, name, {"status": status})


def applied(api: kube.Api, name: str, revision: str) -> None:
    """The Kustomization ``name`` reports ``revision`` applied and Ready."""
    report(api, name, revision)


def seed_zone_repo(tmp_path: Path, name: str = "eks") -> Path:
    """A bare zone repo seeded from clusters/eks: frontend's ZoneRelease (v1, v2, v3) and deploy/."""
    bare = tmp_path / f"{name}.git"
    gitrepo.init_bare_seeded(bare, ROOT / "clusters" / "eks")
    return bare


def git(bare: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(bare), *args], capture_output=True, text=True, check=True).stdout


def head(bare: Path, branch: str = "main") -> str:
    return git(bare, "rev-parse", branch).strip()


def build(bare: Path, rev: str, path: str) -> list[dict[str, Any]]:
    """``kustomize build`` of ``path`` at ``rev`` for what the hub writes: a kustomization's
    ``resources`` (files, or folders with their own kustomization); a folder without one: its YAML files."""
    files = set(git(bare, "ls-tree", "-r", "--name-only", rev, "--", path).split())

    def read(p: str) -> list[dict[str, Any]]:
        return [d for d in yaml.safe_load_all(git(bare, "show", f"{rev}:{p}")) if d]

    def folder(d: str) -> list[dict[str, Any]]:
        k = posixpath.join(d, "kustomization.yaml")
        if k in files:
            out = []
            for r in read(k)[0].get("resources") or []:
                p = posixpath.normpath(posixpath.join(d, r))
                out += read(p) if p in files else folder(p)
            return out
        return [doc for f in sorted(files) if posixpath.dirname(f) == d and f.endswith((".yaml", ".yml"))
                for doc in read(f)]

    return folder(path)


@dataclass
class Applier:
    """kustomize-controller for one zone (``prune: true``), acting as the zone's ServiceAccount."""

    server: LocalKube
    kubeconfig: Path  # the ServiceAccount's (tests.real_kube.Cluster.applier_kc)
    bare: Path
    path: str = "deploy"
    inventory: set[tuple[str, str, str, str]] = field(default_factory=set)
    applied: list[dict[str, Any]] = field(default_factory=list)

    def _client(self) -> httpx.Client:
        kc = yaml.safe_load(self.kubeconfig.read_text())
        token = kc["users"][0]["user"]["token"]
        return httpx.Client(base_url=self.server.url, verify=ssl.create_default_context(cafile=str(self.server.pki["ca"])),
                            timeout=30.0,
                            headers={"Authorization": f"Bearer {token}"})

    def apply(self, rev: str | None = None) -> str:
        """Apply the repo's ``rev`` (default: the head) as Flux would; the revision applied."""
        rev = rev or head(self.bare)
        docs = build(self.bare, rev, self.path)
        now: set[tuple[str, str, str, str]] = set()
        with self._client() as c:
            for d in docs:
                meta = d["metadata"]
                where = self.server.path(d["apiVersion"], d["kind"], meta.get("namespace"), meta["name"])
                r = c.patch(where, content=yaml.safe_dump(d).encode(), params={"fieldManager": "kustomize-controller",
                                                                               "force": "true"},
                            headers={"Content-Type": APPLY, "Accept": "application/json"})
                if r.status_code >= 300:
                    raise AssertionError(f"apply {d['kind']} {meta['name']}: {r.status_code} {r.text[:400]}")
                now.add((d["apiVersion"], d["kind"], meta.get("namespace", ""), meta["name"]))
            for api_version, kind, ns, name in sorted(self.inventory - now):
                r = c.delete(self.server.path(api_version, kind, ns or None, name))
                if r.status_code not in (200, 202, 404):
                    raise AssertionError(f"prune {kind} {name}: {r.status_code} {r.text[:400]}")
        self.inventory = now
        self.applied = docs
        return rev
