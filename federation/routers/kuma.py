"""Kuma: MeshHTTPRoute (kuma.io/v1alpha1) on the global control plane, or legacy TrafficRoute.

MeshHTTPRoute backendRefs select MeshServices by ``labels`` — ``kuma.io/display-name``
(<service>-<version>) and ``kuma.io/zone`` — the form that survives Kuma's next major release
(MeshServiceSubset and ``tags`` are gone on master). Weights are integers: basis points as they are.
A/B matches go in a rule before the weighted one; mirroring uses requestMirror with a percentage.
Cookie session affinity cannot be expressed (Kuma's header filters are per rule, not per backend).
"""

from __future__ import annotations

import re
from typing import Any

from federation.core.spec import Match, StringMatch
from federation.routers.model import RouteRequest, Unsupported, percent_text

NAME = "kuma"


def _labels(req: RouteRequest, zone: str, version: str) -> dict[str, str]:
    return {"kuma.io/display-name": f"{req.service}-{version}", "kuma.io/zone": zone,
            "k8s.kuma.io/namespace": req.namespace}


def _backend(req: RouteRequest, zone: str, version: str, weight: int | None) -> dict[str, Any]:
    ref: dict[str, Any] = {"kind": "MeshService", "labels": _labels(req, zone, version), "port": req.port}
    if weight is not None:
        ref["weight"] = weight
    return ref


def _header(name: str, m: StringMatch) -> dict[str, Any]:
    if m.exact is not None:
        return {"name": name.lower(), "type": "Exact", "value": m.exact}
    if m.prefix is not None:
        return {"name": name.lower(), "type": "Prefix", "value": m.prefix}
    if m.suffix is not None:
        return {"name": name.lower(), "type": "RegularExpression", "value": f".*{re.escape(m.suffix)}$"}
    return {"name": name.lower(), "type": "RegularExpression", "value": m.regex}


def _query(name: str, m: StringMatch) -> dict[str, Any]:
    if m.exact is not None:
        return {"name": name, "type": "Exact", "value": m.exact}
    regex = m.regex if m.regex is not None else (
        f"^{re.escape(m.prefix)}.*" if m.prefix is not None else f".*{re.escape(m.suffix or '')}$")
    return {"name": name, "type": "RegularExpression", "value": regex}


def _matches(m: Match) -> dict[str, Any]:
    if m.source_labels:
        raise Unsupported(NAME, "match.sourceLabels", "use a MeshHTTPRoute targetRef per source instead")
    out: dict[str, Any] = {"path": {"type": "PathPrefix", "value": "/"}}
    if m.headers:
        out["headers"] = [_header(k, v) for k, v in sorted(m.headers.items())]
    if m.query_params:
        out["queryParams"] = [_query(k, v) for k, v in sorted(m.query_params.items())]
    return out


def render(req: RouteRequest) -> list[dict[str, Any]]:
    if req.session_affinity is not None:
        raise Unsupported(NAME, "sessionAffinity", "MeshHTTPRoute filters apply per rule, not per backend, "
                          "so a cookie cannot be set on canary responses only")
    rules: list[dict[str, Any]] = []
    canary = req.canary_subsets()
    if req.matched:
        rules.append({"matches": [_matches(m) for m in req.match],
                      "default": {"backendRefs": [_backend(req, s.zone, s.version, req.canary_share(s.zone)) for s, _ in canary]}})
    default: dict[str, Any] = {"backendRefs": [_backend(req, s.zone, s.version, w) for s, w in req.weights]}
    if req.mirror_weight > 0:
        default["filters"] = [{"type": "RequestMirror", "requestMirror": {
            "backendRef": _backend(req, s.zone, s.version, None),
            "percentage": percent_text(req.mirror_weight)}} for s, _ in canary]
    rules.append({"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "default": default})
    return [{
        "apiVersion": "kuma.io/v1alpha1",
        "kind": "MeshHTTPRoute",
        "metadata": {
            "name": f"{req.service}-federation",
            "namespace": req.mesh_namespace,
            "labels": {"kuma.io/mesh": req.mesh_name, "app.kubernetes.io/managed-by": "federation",
                       "federation.io/step": str(req.step)},
        },
        "spec": {
            "targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "MeshService", "labels": {
                "kuma.io/display-name": req.service, "k8s.kuma.io/namespace": req.namespace}},
                "rules": rules}],
        },
    }]


def render_traffic_route(req: RouteRequest) -> list[dict[str, Any]]:
    """Legacy TrafficRoute (Kuma before MeshHTTPRoute): weighted split by kuma.io/service and zone."""
    if req.session_affinity is not None:
        raise Unsupported("kuma-trafficroute", "sessionAffinity", "TrafficRoute has no cookie affinity")
    if req.mirror_weight > 0:
        raise Unsupported("kuma-trafficroute", "mirror", "TrafficRoute cannot mirror traffic")

    def svc(version: str | None) -> str:
        name = req.service if version is None else f"{req.service}-{version}"
        return f"{name}_{req.namespace}_svc_{req.port}"

    conf: dict[str, Any] = {"split": [{"weight": w, "destination": {"kuma.io/service": svc(s.version),
                                                                      "kuma.io/zone": s.zone}}
                                      for s, w in req.weights]}
    if req.matched:
        http = []
        for m in req.match:
            if m.query_params or m.source_labels:
                raise Unsupported("kuma-trafficroute", "match.queryParams/sourceLabels", "TrafficRoute matches headers only")
            headers = {}
            for k, v in sorted((m.headers or {}).items()):
                headers[k.lower()] = ({"exact": v.exact} if v.exact is not None else
                                      {"prefix": v.prefix} if v.prefix is not None else
                                      {"regex": v.regex if v.regex is not None else f".*{re.escape(v.suffix or '')}$"})
            http.append({"match": {"headers": headers},
                         "split": [{"weight": req.canary_share(s.zone), "destination": {"kuma.io/service": svc(s.version), "kuma.io/zone": s.zone}}
                                   for s, _ in req.canary_subsets()]})
        conf["http"] = http
    return [{
        "apiVersion": "kuma.io/v1alpha1",
        "kind": "TrafficRoute",
        "mesh": req.mesh_name,
        "metadata": {"name": f"{req.service}-federation"},
        "spec": {"sources": [{"match": {"kuma.io/service": "*"}}],
                 "destinations": [{"match": {"kuma.io/service": svc(None)}}],
                 "conf": conf},
    }]
