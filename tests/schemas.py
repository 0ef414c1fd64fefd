"""Validate rendered manifests against the real CRD schemas in tests/data/schemas (see its README)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMAS = Path(__file__).resolve().parent / "data" / "schemas"

CRDS = {
    ("kuma.io/v1alpha1", "MeshHTTPRoute"): "kuma/kuma.io_meshhttproutes.yaml",
    ("kuma.io/v1alpha1", "TrafficRoute"): "kuma/kuma.io_trafficroutes.yaml",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "gateway-api/gateway.networking.k8s.io_httproutes.yaml",
    ("split.smi-spec.io/v1alpha1", "TrafficSplit"): "smi/trafficsplit-crd.linkerd-smi-v0.2.7.yaml",
    ("split.smi-spec.io/v1alpha2", "TrafficSplit"): "smi/trafficsplit-crd.linkerd-smi-v0.2.7.yaml",
    ("networking.istio.io/v1", "VirtualService"): "istio/virtualservices.networking.istio.io.yaml",
    ("networking.istio.io/v1", "DestinationRule"): "istio/destinationrules.networking.istio.io.yaml",
}


@functools.cache
def crd_schema(relpath: str, version: str) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all((SCHEMAS / relpath).read_text()) if d]
    crd = next(d for d in docs if d.get("kind") == "CustomResourceDefinition")
    v = next(v for v in crd["spec"]["versions"] if v["name"] == version)
    return v["schema"]["openAPIV3Schema"]


@functools.cache
def kuma_json(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / "kuma" / f"{name}.json").read_text())


def validate(doc: dict[str, Any], crd_file: str | None = None) -> None:
    """Raise jsonschema.ValidationError when ``doc`` does not fit its CRD's schema."""
    api, kind = doc["apiVersion"], doc["kind"]
    relpath = crd_file or CRDS[(api, kind)]
    version = api.split("/")[-1]
    jsonschema.Draft7Validator(crd_schema(relpath, version)).validate(doc)
    if kind == "TrafficRoute":
        # The CRD leaves spec open; Kuma's own proto-derived JSON Schema holds the fields.
        jsonschema.validate(doc["spec"], kuma_json("TrafficRoute"))


KUBERNETES_VERSION = "1.37"  # the schemas of the API server the tests run (tests/kube: v1.37.2)


def validate_kubernetes(doc: dict[str, Any]) -> None:
    """Any object the project writes: built-in kinds against the Kubernetes OpenAPI schema
    (``kubernetes-validate``, strict: unknown fields refused), custom ones against their CRD.
    Raises on a problem."""
    import kubernetes_validate

    if (doc["apiVersion"], doc["kind"]) in CRDS:
        validate(doc)
        return
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
