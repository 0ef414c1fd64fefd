"""Pick a router by name. Names: kuma, kuma-trafficroute, gatewayapi, linkerd, smi, smi-v1alpha1,
istio, envoy. Callers: ``fedctl render``, the hub (the fleet's mesh provider)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from federation.core.errors import PermanentError
from federation.routers import envoy, gatewayapi, istio, kuma, smi
from federation.routers.model import RouteRequest

Renderer = Callable[[RouteRequest], list[dict[str, Any]]]

ROUTERS: dict[str, Renderer] = {
    "kuma": kuma.render,
    "kuma-trafficroute": kuma.render_traffic_route,
    "gatewayapi": gatewayapi.render,
    "linkerd": lambda req: gatewayapi.render(req, flavour="linkerd"),
    "smi": smi.render,
    "smi-v1alpha1": lambda req: smi.render(req, version="v1alpha1"),
    "istio": istio.render,
    "envoy": envoy.render,
}

# What a Fleet's mesh.provider renders by default.
PROVIDER_DEFAULT = {"kuma": "kuma", "gatewayapi": "gatewayapi", "smi": "smi", "istio": "istio", "envoy": "envoy"}


def render(name: str, req: RouteRequest) -> list[dict[str, Any]]:
    try:
        renderer = ROUTERS[name]
    except KeyError:
        raise PermanentError(f"unknown router {name!r}; known: {', '.join(ROUTERS)}") from None
    return renderer(req)
