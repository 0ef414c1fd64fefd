"""Flux objects on the test API server, as the hub's tests need them: a Kustomization with its
GitRepository (valid against Flux's CRDs) — or the example ones of clusters/flux — and Flux
reporting a revision applied through the status subresource, as kustomize-controller writes it;
plus a zone repo seeded from clusters/eks (v1, v2, v3 defined, deploy/ the path Flux applies).
Applying a zone repo as Flux does is ``federation.demo.fluxlocal.LocalFlux``."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

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


def create_example(k8s: Any, zone: str) -> None:
    """The zone's Flux objects from clusters/flux/zone-<zone>.yaml (path ./deploy, prune, the zone's
    ServiceAccount), applied as a cluster admin bootstraps them (``k8s``: tests.real_kube.Cluster)."""
    k8s.server.apply([d for d in yaml.safe_load_all((ROOT / "clusters" / "flux" / f"zone-{zone}.yaml").read_text())
                      if d])


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
