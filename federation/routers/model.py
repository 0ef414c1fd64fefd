"""What every router renders from: one service's routing at one step. Pure data."""

from __future__ import annotations

from dataclasses import dataclass, field

from federation.core.errors import PermanentError
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
    mesh_name: str = "default"
    mesh_namespace: str = "default"
    local_zone: str | None = None  # where the route is applied: its subsets use unsuffixed names
    # Where the canary runs. A subset is (zone, version): in a migration (the same version moved to
    # other zones) the version alone does not tell the sides apart. Empty: every zone (older callers).
    canary_zones: tuple[str, ...] = ()
    # How matched (A/B) and sticky (session affinity) traffic is shared among canary zones, in basis
    # points: the canary's zoneWeights (or capacities). Empty: equally.
    canary_shares: tuple[tuple[str, int], ...] = ()

    def canary_share(self, zone: str) -> int:
        """Weight of ``zone`` among canary zones for requests that all go to the canary."""
        return dict(self.canary_shares).get(zone, 0) if self.canary_shares else 1

    def backend_name(self, subset: Subset) -> str:
        """Kubernetes Service of one subset: <service>-<version>, suffixed -<zone> when remote
        (the name multi-cluster service mirroring gives it)."""
        base = f"{self.service}-{subset.version}"
        return base if subset.zone == self.local_zone else f"{base}-{subset.zone}"

    def is_canary(self, subset: Subset) -> bool:
        return subset.version == self.canary_version and (not self.canary_zones or subset.zone in self.canary_zones)

    def canary_subsets(self) -> list[tuple[Subset, int]]:
        return [(s, w) for s, w in self.weights if self.is_canary(s)]

    def canary_zone_totals(self) -> dict[str, int]:
        """The canary side's weight per zone."""
        out: dict[str, int] = {}
        for s, w in self.canary_subsets():
            out[s.zone] = out.get(s.zone, 0) + w
        return out

    def zone_totals(self) -> dict[str, int]:
        out = {z: 0 for z in self.zones}
        for s, w in self.weights:
            out[s.zone] = out.get(s.zone, 0) + w
        return out



class Unsupported(PermanentError):
    """A router cannot express a feature the canary asks for."""

    def __init__(self, router: str, feature: str, why: str) -> None:
        super().__init__(f"router {router}: cannot express {feature}: {why}")


def percent_text(bp: int) -> str:
    """Basis points as a decimal percent string: 667 -> '6.67', 5000 -> '50'."""
    whole, frac = divmod(bp, 100)
    return str(whole) if frac == 0 else f"{whole}.{frac:02d}".rstrip("0")
