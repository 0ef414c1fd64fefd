"""Gateway API: HTTPRoute (gateway.networking.k8s.io/v1) with weighted backendRefs.

Two flavours: ``gateway`` (parentRef a Gateway) and ``linkerd`` (mesh mode: parentRef the Service).
Linkerd ignores routes using fields newer than Gateway API v1.2.1, so that flavour stays within it:
mirroring a fraction (``percent``) is newer, hence refused there. Weights are not percentages; basis
points are used as they are (max 1,000,000). A/B header and query matches come first; session
affinity is a cookie-matched rule to the canary plus a Set-Cookie on canary responses (per backend).
"""

from __future__ import annotations

import re
from typing import Any

from federation.core.spec import Match, StringMatch
from federation.routers.model import RouteRequest, Unsupported

NAME = "gatewayapi"


def _str(m: StringMatch) -> tuple[str, str]:
    if m.exact is not None:
        return "Exact", m.exact
    if m.prefix is not None:
        return "RegularExpression", f"^{re.escape(m.prefix)}.*"
    if m.suffix is not None:
        return "RegularExpression", f".*{re.escape(m.suffix)}$"
    return "RegularExpression", m.regex or ""


def _match(m: Match) -> dict[str, Any]:
    if m.source_labels:
        raise Unsupported(NAME, "match.sourceLabels", "HTTPRoute has no source-label matches")
    out: dict[str, Any] = {"path": {"type": "PathPrefix", "value": "/"}}
    if m.headers:
        out["headers"] = [dict(zip(("type", "value"), _str(v), strict=True), name=k) for k, v in sorted(m.headers.items())]
    if m.query_params:
        out["queryParams"] = [dict(zip(("type", "value"), _str(v), strict=True), name=k)
                              for k, v in sorted(m.query_params.items())]
    return out


def render(req: RouteRequest, flavour: str = "gateway", gateway: str = "edge",
           gateway_namespace: str | None = None) -> list[dict[str, Any]]:
    linkerd = flavour == "linkerd"
    if linkerd:
        parent: dict[str, Any] = {"group": "core", "kind": "Service", "name": req.service, "port": req.port}
    else:
        parent = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway}
        if gateway_namespace:
            parent["namespace"] = gateway_namespace

    def ref(subset: Any, weight: int, filters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"group": "", "kind": "Service", "name": req.backend_name(subset), "port": req.port,
                               "weight": weight}
        if filters:
            out["filters"] = filters
        return out

    canary = req.canary_subsets()
    rules: list[dict[str, Any]] = []
    if req.matched:
        rules.append({"matches": [_match(m) for m in req.match], "backendRefs": [ref(s, req.canary_share(s.zone)) for s, _ in canary]})
    set_cookie: list[dict[str, Any]] | None = None
    if req.session_affinity is not None:
        sa = req.session_affinity
        rules.append({"matches": [{"path": {"type": "PathPrefix", "value": "/"}, "headers": [{
            "type": "RegularExpression", "name": "Cookie", "value": f".*{re.escape(sa.cookie_name)}=.*"}]}],
            "backendRefs": [ref(s, req.canary_share(s.zone)) for s, _ in canary]})
        cookie = f"{sa.cookie_name}=1; Max-Age={sa.max_age}; Path={sa.path or '/'}"
        if sa.same_site:
            cookie += f"; SameSite={sa.same_site}"
        if sa.secure:
            cookie += "; Secure"
        if sa.http_only:
            cookie += "; HttpOnly"
        set_cookie = [{"type": "ResponseHeaderModifier", "responseHeaderModifier": {
            "add": [{"name": "Set-Cookie", "value": cookie}]}}]
    default: dict[str, Any] = {
        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
        "backendRefs": [ref(s, w, set_cookie if req.is_canary(s) else None) for s, w in req.weights],
    }
    if req.mirror_weight > 0:
        if linkerd and req.mirror_weight < 10_000:
            raise Unsupported("linkerd", "mirrorWeight below 100",
                              "RequestMirror percent is newer than Gateway API v1.2.1, which Linkerd requires")
        filters = []
        for s, _ in canary:
            mirror: dict[str, Any] = {"backendRef": {"group": "", "kind": "Service", "name": req.backend_name(s),
                                                     "port": req.port}}
            if req.mirror_weight < 10_000:
                mirror["fraction"] = {"numerator": req.mirror_weight, "denominator": 10_000}
            filters.append({"type": "RequestMirror", "requestMirror": mirror})
        default["filters"] = filters
    rules.append(default)
    return [{
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": f"{req.service}-federation", "namespace": req.namespace,
                     "labels": {"app.kubernetes.io/managed-by": "federation", "federation.io/step": str(req.step)}},
        "spec": {"parentRefs": [parent], "rules": rules},
    }]
