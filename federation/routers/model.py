"""What every router renders from: one service's routing at one step. Pure data."""

from __future__ import annotations

from dataclasses import dataclass, field

from federation.core.spec import Match, SessionAffinity
from federation.core.weights import Subset


@dataclass(frozen=True)
class RouteRequest:
    service: str
    namespace: str
    port: int
    primary_version: str
    canary_version: str
    weights: tuple[tuple[Subset, int], ...]
    step: int
    rollout: str
    mirror_weight: int = 0
    matched: bool = False
    match: tuple[Match, ...] = ()
    session_affinity: SessionAffinity | None = None
    zones: tuple[str, ...] = field(default=())  # every zone of the fleet (routes name them all)

    def zone_totals(self) -> dict[str, int]:
        out = {z: 0 for z in self.zones}
        for s, w in self.weights:
            out[s.zone] = out.get(s.zone, 0) + w
        return out

    def side_zone_totals(self, version: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for s, w in self.weights:
            if s.version == version:
                out[s.zone] = out.get(s.zone, 0) + w
        return out
