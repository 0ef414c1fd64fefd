"""Istio: VirtualService (networking.istio.io/v1) weighted routes + a DestinationRule of subsets.

A subset is one version in one cluster: labels ``version`` and ``topology.istio.io/cluster``.
Weights are relative integers (basis points as they are). A/B matches route first; mirroring uses
``mirrors`` with a percentage per canary subset; session affinity matches a cookie to the canary and
sets it on canary responses (per-destination response headers).
"""

from __future__ import annotations

import re
from typing import Any

from federation.core.spec import Match, StringMatch
from federation.routers.model import RouteRequest, Unsupported

NAME = "istio"


def _str(m: StringMatch) -> dict[str, str]:
    if m.exact is not None:
        return {"exact": m.exact}
    if m.prefix is not None:
        return {"prefix": m.prefix}
    if m.suffix is not None:
        return {"regex": f".*{re.escape(m.suffix)}$"}
    return {"regex": m.regex or ""}


def _match(m: Match) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if m.headers:
        out["headers"] = {k.lower(): _str(v) for k, v in sorted(m.headers.items())}
    if m.query_params:
        out["queryParams"] = {k: _str(v) for k, v in sorted(m.query_params.items())}
    if m.source_labels:
        out["sourceLabels"] = dict(m.source_labels)
    return out


def subset_name(zone: str, version: str) -> str:
    return f"{zone}-{version}"


def render(req: RouteRequest) -> list[dict[str, Any]]:
    host = f"{req.service}.{req.namespace}.svc.cluster.local"

    def dest(zone: str, version: str, weight: int | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {"destination": {"host": host, "subset": subset_name(zone, version),
                                             "port": {"number": req.port}}}
        if weight is not None:
            d["weight"] = weight
        return d

    canary = req.canary_subsets()
    http: list[dict[str, Any]] = []
    if req.matched:
        http.append({"name": "ab-canary", "match": [_match(m) for m in req.match],
                     "route": [dest(s.zone, s.version, req.canary_share(s.zone)) for s, _ in canary]})
    set_cookie = None
    if req.session_affinity is not None:
        sa = req.session_affinity
        http.append({"name": "sticky-canary", "match": [{"headers": {"cookie": {
            "regex": f".*{re.escape(sa.cookie_name)}=.*"}}}], "route": [dest(s.zone, s.version, req.canary_share(s.zone)) for s, _ in canary]})
        set_cookie = f"{sa.cookie_name}=1; Max-Age={sa.max_age}; Path={sa.path or '/'}"
    routes = []
    for s, w in req.weights:
        d = dest(s.zone, s.version, w)
        if set_cookie and req.is_canary(s):
            d["headers"] = {"response": {"add": {"Set-Cookie": set_cookie}}}
        routes.append(d)
    default: dict[str, Any] = {"name": "weighted", "route": routes}
    if req.mirror_weight > 0:
        if not canary:
            raise Unsupported(NAME, "mirror", "no canary subset to mirror to")
        default["mirrors"] = [{"destination": dest(s.zone, s.version)["destination"],
                               "percentage": {"value": req.mirror_weight / 100}} for s, _ in canary]
    http.append(default)
    meta = {"namespace": req.namespace,
            "labels": {"app.kubernetes.io/managed-by": "federation", "federation.io/step": str(req.step)}}
    subsets = sorted({(s.zone, s.version) for s, _ in req.weights})
    return [
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": {"name": f"{req.service}-federation", **meta},
         "spec": {"hosts": [host], "http": http}},
        {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
         "metadata": {"name": f"{req.service}-federation", **meta},
         "spec": {"host": host, "subsets": [
             {"name": subset_name(z, v), "labels": {"version": v, "topology.istio.io/cluster": z}}
             for z, v in subsets]}},
    ]
