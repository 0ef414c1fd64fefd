"""Is an Envoy (a zone's ingress, the edge) serving, and which route configuration does it run?

Asks the admin endpoint: ``/ready`` (200 and LIVE while it serves; 503 while draining or before its
first configuration) and ``/config_dump`` for the version of each route configuration it runs.
Callers: ``fedctl clusters``, ``fedctl agents status``.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class EnvoyState:
    ok: bool
    detail: str


async def check(address: str, port: int, timeout: float = 3.0) -> EnvoyState:
    base = f"http://{address}:{port}"
    try:
        async with httpx.AsyncClient(timeout=timeout) as c:
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


def _short(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return "connection refused" if "refused" in str(exc).lower() else "cannot connect"
    return type(exc).__name__
