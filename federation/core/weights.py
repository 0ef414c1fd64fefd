"""Weights in basis points (0..10000) over subsets (zone, version), with exact integer arithmetic.

A canary weight is spread over the canary zones by their shares (``zoneWeights``, else zone
capacity) with the largest-remainder method, so every split sums exactly. Callers: ``core.plan``,
``core.decide``, ``routers`` (which turn these into each mesh's integer rules).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from federation.core.spec import BASIS_POINTS, CanarySpec, Fleet


@dataclass(frozen=True, order=True)
class Subset:
    """The unit that receives a weight: one version in one zone."""

    zone: str
    version: str

    def __str__(self) -> str:
        return f"{self.zone}/{self.version}"

    @staticmethod
    def parse(text: str) -> Subset:
        zone, _, version = text.partition("/")
        return Subset(zone, version)


Weights = Mapping[Subset, int]


def spread(total: int, shares: Sequence[tuple[str, int]]) -> dict[str, int]:
    """Split ``total`` over named shares exactly (largest remainder; ties go to the earlier name)."""
    positive = [(k, s) for k, s in shares if s > 0]
    if total == 0 or not positive:
        return {k: 0 for k, _ in shares}
    whole = sum(s for _, s in positive)
    floors = {k: total * s // whole for k, s in positive}
    left = total - sum(floors.values())
    # sorted() is stable, so equal remainders keep the zones' listed order.
    order = sorted(positive, key=lambda ks: -(total * ks[1] % whole))
    for k, _ in order[:left]:
        floors[k] += 1
    return {k: floors.get(k, 0) for k, _ in shares}


def shares(spec: CanarySpec, fleet: Fleet | None, side: str) -> list[tuple[str, int]]:
    """Relative shares of the zones on one side: zoneWeights for the canary, else capacity, else 1."""
    placement = spec.canary if side == "canary" else spec.primary
    out = []
    for z in placement.zones:
        if side == "canary" and spec.zone_weights is not None:
            out.append((z, spec.zone_weights.get(z, 0)))
        elif fleet is not None and z in fleet.zone_names:
            out.append((z, fleet.zone(z).capacity))
        else:
            out.append((z, 1))
    return out


def subsets_for(spec: CanarySpec, canary_bp: int, fleet: Fleet | None = None) -> dict[Subset, int]:
    """Every subset's weight when the canary side as a whole has ``canary_bp``."""
    if not 0 <= canary_bp <= BASIS_POINTS:
        raise ValueError(f"canary weight {canary_bp} is outside 0..{BASIS_POINTS}")
    pv = spec.primary.version
    out = {Subset(z, pv): bp for z, bp in spread(BASIS_POINTS - canary_bp, shares(spec, fleet, "primary")).items()}
    out.update({Subset(z, spec.canary.version): bp
                for z, bp in spread(canary_bp, shares(spec, fleet, "canary")).items()})
    return out


def canary_shares(spec: CanarySpec, fleet: Fleet | None = None) -> tuple[tuple[str, int], ...]:
    """How traffic that all goes to the canary (A/B matched, sticky) is shared among canary zones:
    as a canary weight of 100% would be, by ``zoneWeights`` (default: capacity)."""
    return tuple(sorted((z, bp) for z, bp in spread(BASIS_POINTS, shares(spec, fleet, "canary")).items()))


def by_zone(weights: Weights) -> dict[str, int]:
    """Total weight per zone, as a global edge routes it."""
    out: dict[str, int] = {}
    for s, bp in weights.items():
        out[s.zone] = out.get(s.zone, 0) + bp
    return out


def within_zone(weights: Weights, zone: str) -> dict[str, int]:
    """Weights of the versions inside one zone, as that zone's ingress splits them."""
    return {s.version: bp for s, bp in weights.items() if s.zone == zone}


def as_percent(bp: int) -> str:
    """Human text for basis points: 2500 -> '25%', 333 -> '3.33%'."""
    whole, frac = divmod(bp, 100)
    return f"{whole}%" if frac == 0 else f"{whole}.{frac:02d}".rstrip("0") + "%"
