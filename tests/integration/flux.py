"""Flux objects on the Kubernetes emulator, as the hub's tests need them: a Kustomization with its
GitRepository, and Flux reporting a revision applied; plus a zone repo seeded with v1 and v2."""

from __future__ import annotations

from pathlib import Path

from federation.gitops import repo as gitrepo
from federation.runtimes import kubernetes as kube

ROOT = Path(__file__).resolve().parents[2]
NS = "flux-system"


def create(api: kube.Api, name: str) -> None:
    g, v, p = kube.FLUX_KS
    api.custom.create_namespaced_custom_object(g, v, NS, p, {
        "apiVersion": f"{g}/{v}", "kind": "Kustomization", "metadata": {"name": name}, "spec": {"path": "./"}})
    g, v, p = kube.FLUX_GIT
    api.custom.create_namespaced_custom_object(g, v, NS, p, {
        "apiVersion": f"{g}/{v}", "kind": "GitRepository", "metadata": {"name": name}, "spec": {"url": "x"}})


def applied(api: kube.Api, name: str, revision: str) -> None:
    """The Kustomization ``name`` reports ``revision`` applied and Ready."""
    g, v, p = kube.FLUX_KS
    api.custom.patch_namespaced_custom_object_status(g, v, NS, p, name, {"status": {
        "observedGeneration": 1, "lastAppliedRevision": f"main@sha1:{revision}",
        "conditions": [{"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded"}]}})


def seed_zone_repo(tmp_path: Path, name: str = "eks") -> Path:
    """A bare zone repo whose frontend ZoneRelease defines v1 and v2 (from clusters/eks)."""
    seed = tmp_path / f"{name}-seed"
    seed.mkdir()
    (seed / "frontend.yaml").write_text((ROOT / "clusters" / "eks" / "frontend.yaml").read_text()
                                        .replace("v2:\n      command", "v1:\n      command", 1)
                                        .replace("    v3:\n", "    v2:\n", 1))
    bare = tmp_path / f"{name}.git"
    gitrepo.init_bare_seeded(bare, seed)
    return bare
