"""Envoy RDS for a hub-managed edge: weighted_clusters over zone ingresses, by file rename.

One cluster per zone (``zone-<name>``, defined in the edge's bootstrap). Weights are basis points,
which Envoy takes as relative integers; zero-weight clusters are left out and the total must be
positive, so an all-zero route is refused here rather than by Envoy. ``validate_clusters: true``.
Mirroring uses ``request_mirror_policies`` with a runtime fraction; A/B adds a header/cookie-matched
route to the canary zones first. Callers: ``hub`` executor, ``fedctl render``.
"""

from __future__ import annotations

import re
from typing import Any

from federation.core.errors import PermanentError
from federation.core.spec import Match, StringMatch
from federation.routers.model import RouteRequest

ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"


def cluster(zone: str) -> str:
    return f"zone-{zone}"


def version_info(req: RouteRequest) -> str:
    return f"{req.rollout}@step-{req.step}"


def step_of(version_text: str | None, rollout: str) -> int | None:
    """The step in an applied ``version_info``, when it belongs to ``rollout``."""
    if not version_text or not version_text.startswith(f"{rollout}@step-"):
        return None
    try:
        return int(version_text.rsplit("-", 1)[1])
    except ValueError:
        return None


def _weighted(totals: dict[str, int]) -> dict[str, Any]:
    live = [(z, w) for z, w in sorted(totals.items()) if w > 0]
    if not live:
        raise PermanentError("envoy route: every weight is 0 (Envoy needs a positive total)")
    return {"clusters": [{"name": cluster(z), "weight": w} for z, w in live]}


def _string_match(m: StringMatch) -> dict[str, Any]:
    if m.exact is not None:
        return {"exact": m.exact}
    if m.prefix is not None:
        return {"prefix": m.prefix}
    if m.suffix is not None:
        return {"suffix": m.suffix}
    return {"safe_regex": {"regex": m.regex}}


def _match(m: Match) -> dict[str, Any]:
    out: dict[str, Any] = {"prefix": "/"}
    if m.headers:
        out["headers"] = [{"name": k, "string_match": _string_match(v)} for k, v in sorted(m.headers.items())]
    if m.query_params:
        out["query_parameters"] = [{"name": k, "string_match": _string_match(v)}
                                   for k, v in sorted(m.query_params.items())]
    if m.source_labels:
        raise PermanentError("envoy route: sourceLabels matches need a mesh sidecar; the edge cannot see them")
    return out


def _action(totals: dict[str, int]) -> dict[str, Any]:
    return {"weighted_clusters": _weighted(totals), "timeout": "15s",
            "retry_policy": {"retry_on": "connect-failure,refused-stream,reset", "num_retries": 2}}


def render(req: RouteRequest) -> list[dict[str, Any]]:
    """The RDS discovery response document for the edge (one RouteConfiguration)."""
    routes: list[dict[str, Any]] = []
    canary_totals = req.canary_zone_totals()
    if req.matched:
        canary_share = {z: req.canary_share(z) for z in canary_totals}
        for m in req.match:
            routes.append({"match": _match(m), "route": _action(canary_share)})
    default = _action(req.zone_totals())
    if req.session_affinity is not None:
        sa = req.session_affinity
        sticky = {z: req.canary_share(z) for z in canary_totals}
        if sticky:
            routes.append({"match": {"prefix": "/", "headers": [{"name": "cookie", "string_match": {
                "safe_regex": {"regex": f".*{re.escape(sa.cookie_name)}=.*"}}}]}, "route": _action(sticky)})
        cookie = f"{sa.cookie_name}=1; Max-Age={sa.max_age}; Path={sa.path or '/'}"
        for c in default["weighted_clusters"]["clusters"]:
            if c["name"] in {cluster(z) for z in canary_totals}:
                c["response_headers_to_add"] = [{"header": {"key": "set-cookie", "value": cookie},
                                                 "append_action": "APPEND_IF_EXISTS_OR_ADD"}]
    if req.mirror_weight > 0:
        default["request_mirror_policies"] = [
            {"cluster": cluster(z), "runtime_fraction": {
                "default_value": {"numerator": req.mirror_weight, "denominator": "TEN_THOUSAND"}}}
            for z in sorted(canary_totals)
        ]
    routes.append({"match": {"prefix": "/"}, "route": default})
    return [{
        "version_info": version_info(req),
        "resources": [{
            "@type": ROUTE_TYPE,
            "name": req.service,
            "validate_clusters": True,
            "virtual_hosts": [{"name": req.service, "domains": ["*"], "routes": routes}],
        }],
    }]

