"""A hub-managed Envoy edge: the rendered RDS written by rename, the applied version read back.

Envoy ignores in-place writes to a watched xDS file, so the document is written to a temp file in
the same directory and renamed over the path. The admin endpoint's ``version_text`` is the proof of
convergence; it is asked on every observation of a step, with the admin reads' one TLS context
(``envoy_admin.tls``).
Callers: ``runtimes.routes.EdgeRoute`` (the mesh route of a provider-envoy fleet).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx

from federation import files
from federation.core.spec import Edge
from federation.runtimes import envoy_admin


def write_by_rename(path: Path, text: str) -> None:
    files.replace(path, text.encode(), mode=0o644)


class EnvoyEdge:
    def __init__(self, edge: Edge, stat_prefix: str = "edge") -> None:
        self.edge = edge
        self.path = Path(edge.rds_path)
        self.stat_prefix = stat_prefix
        self.admin = f"http://{edge.admin.address}:{edge.admin.port}"

    def route_path(self, route: str) -> Path:
        """Where the edge watches the route of ``route`` (a service): ``rdsPath`` with ``{service}``
        replaced. Envoy takes one RouteConfiguration per path-based RDS file, so an edge carrying
        several services needs a ``{service}`` in ``rdsPath`` (and one listener per service)."""
        return Path(self.edge.rds_path.replace("{service}", route))

    async def apply(self, document: dict[str, Any]) -> None:
        route = str(document["resources"][0]["name"])  # routers.envoy renders one per document
        await asyncio.to_thread(write_by_rename, self.route_path(route), json.dumps(document, indent=1))

    async def version_text(self, route: str) -> str | None:
        key = f"http.{self.stat_prefix}.rds.{route}.version_text"
        try:
            async with httpx.AsyncClient(timeout=2.0, verify=envoy_admin.tls()) as c:
                r = await c.get(f"{self.admin}/stats", params={"filter": f"^{key}$"})
        except httpx.HTTPError:
            return None
        for line in r.text.splitlines():
            name, _, value = line.partition(": ")
            if name == key:
                return value.strip().strip('"')
        return None
