"""Is an Envoy (a zone's ingress, the edge) serving, and which route configuration does it run?

Asks the admin endpoint: ``/ready`` (200 and LIVE while it serves; 503 while draining or before its
first configuration) and ``/config_dump`` for the version of each route configuration it runs, or
the clusters one route sends to (``routed_clusters``).
Callers: ``fedctl clusters``, ``fedctl agents status``, ``runtimes.flux`` (a Kubernetes zone's ingress).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import httpx

from federation import resolve


def tls() -> ssl.SSLContext:
    """The shared default TLS context (``resolve.tls``: certifi's CAs, built once): a new client's
    own would parse the bundle again (20-100 ms of CPU, for a plain-HTTP admin port asked on every
    observation of a step)."""
    return resolve.tls(True)


@dataclass(frozen=True)
class EnvoyState:
    ok: bool
    detail: str


async def check(address: str, port: int, timeout: float = 3.0) -> EnvoyState:
    base = f"http://{address}:{port}"
    try:
        async with httpx.AsyncClient(timeout=timeout, verify=tls()) as c:
            ready = await c.get(f"{base}/ready")
            state = ready.text.strip() or f"HTTP {ready.status_code}"
            dump = await c.get(f"{base}/config_dump", params={"resource": "dynamic_route_configs"})
    except httpx.HTTPError as exc:
        return EnvoyState(False, f"admin {address}:{port}: {_short(exc)}")
    versions: list[str] = []
    if dump.status_code == 200:
        try:
            for cfg in dump.json().get("configs", []):
                name = (cfg.get("route_config") or {}).get("name", "?")
                versions.append(f"{name}@{cfg.get('version_info', '?')}")
        except ValueError:
            pass
    config = f"routes {', '.join(versions)}" if versions else "no dynamic routes"
    return EnvoyState(ready.status_code == 200 and state == "LIVE", f"{state}; {config}")


async def routed_clusters(address: str, port: int, route: str, timeout: float = 2.0) -> list[str] | str:
    """The clusters the route configuration ``route`` sends to (weighted or single; empty when it
    routes nowhere: no such route, or a direct response), or why the admin could not tell."""
    try:
        async with httpx.AsyncClient(timeout=timeout, verify=tls()) as c:
            dump = await c.get(f"http://{address}:{port}/config_dump", params={"resource": "dynamic_route_configs"})
        dump.raise_for_status()
        configs = dump.json().get("configs", [])
    except httpx.HTTPError as exc:
        return f"admin {address}:{port}: {_short(exc) if not isinstance(exc, httpx.HTTPStatusError) else exc}"
    except ValueError:
        return f"admin {address}:{port}: config_dump is not JSON"
    out: list[str] = []
    for cfg in configs if isinstance(configs, list) else []:
        rc = cfg.get("route_config") if isinstance(cfg, dict) else None
        if not isinstance(rc, dict) or rc.get("name") != route:
            continue
        for vh in rc.get("virtual_hosts") or []:
            for r in (vh.get("routes") or []) if isinstance(vh, dict) else []:
                action = r.get("route") if isinstance(r, dict) else None
                if not isinstance(action, dict):
                    continue
                if isinstance(action.get("cluster"), str):
                    out.append(action["cluster"])
                weighted = (action.get("weighted_clusters") or {}).get("clusters") or []
                out += [str(w.get("name")) for w in weighted if isinstance(w, dict) and int(w.get("weight", 1) or 0) > 0]
    return out


def _short(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return "connection refused" if "refused" in str(exc).lower() else "cannot connect"
    return type(exc).__name__
