"""SMI TrafficSplit (split.smi-spec.io) as linkerd-smi ships it: v1alpha2 (weights are numbers) by
default, v1alpha1 (int-or-string) on request. Weights only: no matches, mirroring or affinity."""

from __future__ import annotations

from typing import Any

from federation.routers.model import RouteRequest, Unsupported

NAME = "smi"


def render(req: RouteRequest, version: str = "v1alpha2") -> list[dict[str, Any]]:
    if version not in ("v1alpha1", "v1alpha2"):
        raise Unsupported(NAME, f"apiVersion {version}", "linkerd-smi serves v1alpha1 and v1alpha2")
    if req.matched:
        raise Unsupported(NAME, "match (A/B testing)", "TrafficSplit has weights only")
    if req.mirror_weight > 0:
        raise Unsupported(NAME, "mirror", "TrafficSplit cannot mirror traffic")
    if req.session_affinity is not None:
        raise Unsupported(NAME, "sessionAffinity", "TrafficSplit has no cookie affinity")
    backends = [{"service": req.backend_name(s), "weight": w} for s, w in req.weights]
    if not any(b["weight"] for b in backends):
        raise Unsupported(NAME, "all-zero weights", "a TrafficSplit needs a positive total")
    return [{
        "apiVersion": f"split.smi-spec.io/{version}",
        "kind": "TrafficSplit",
        "metadata": {"name": f"{req.service}-federation", "namespace": req.namespace,
                     "labels": {"app.kubernetes.io/managed-by": "federation", "federation.io/step": str(req.step)}},
        "spec": {"service": req.service, "backends": backends},
    }]
