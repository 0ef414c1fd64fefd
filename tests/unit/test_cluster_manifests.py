"""Every Kubernetes object under clusters/ is valid: built-in kinds against the Kubernetes OpenAPI
schema (kubernetes-validate, strict: unknown fields refused), Flux's against its CRDs (the copies
the local API server is started with), kustomizations checked for what Flux needs of them."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.schemas import validate_kubernetes

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "federation" / "demo" / "crds"
FLUX = {("source.toolkit.fluxcd.io/v1", "GitRepository"): "source.toolkit.fluxcd.io_gitrepositories.yaml",
        ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"): "kustomize.toolkit.fluxcd.io_kustomizations.yaml"}
NOT_KUBERNETES = {"ZoneRelease", "Fleet", "FederatedCanary", "MetricTemplate"}
DOCS = [(p, i, d) for p in sorted((ROOT / "clusters").rglob("*.yaml"))
        for i, d in enumerate(yaml.safe_load_all(p.read_text())) if d and d.get("kind") not in NOT_KUBERNETES]


def crd_schema(file: str, version: str) -> dict:
    crd = next(d for d in yaml.safe_load_all((CRDS / file).read_text()) if d)
    return next(v for v in crd["spec"]["versions"] if v["name"] == version)["schema"]["openAPIV3Schema"]


def test_the_examples_are_there():
    kinds = {d["kind"] for _, _, d in DOCS}
    assert {"ClusterRole", "RoleBinding", "ServiceAccount", "GitRepository", "Kustomization"} <= kinds
    assert len(DOCS) >= 15


@pytest.mark.parametrize(("path", "index", "doc"), DOCS,
                         ids=[f"{p.relative_to(ROOT)}#{i}" for p, i, _ in DOCS])
def test_every_kubernetes_object_under_clusters_is_valid(path: Path, index: int, doc: dict):
    key = (doc["apiVersion"], doc["kind"])
    if doc["apiVersion"].startswith("kustomize.config.k8s.io/"):
        assert path.name == "kustomization.yaml" and isinstance(doc.get("resources", []), list)
    elif key in FLUX:
        jsonschema.Draft7Validator(crd_schema(FLUX[key], doc["apiVersion"].split("/")[1])).validate(doc)
    else:
        validate_kubernetes(doc)
