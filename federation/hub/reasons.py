"""Why a zone (or the mesh route) has not applied a rollout's current step, in one line.

From what the tick observed: an unreachable host (the SSH error), an agent's error (a missing
binary, a failed instance), a host still at an older step, Flux's condition on a Kubernetes zone,
or the step's own apply error (a version the zone repo does not define). The hub logs a reason when
it appears or changes and when the zone catches up; the API and ``fedctl status``/``watch`` show it.
Callers: ``hub.service``.
"""

from __future__ import annotations

from typing import Any

MESH = "mesh"


def zone_reason(zone: str, step: int, applied: int | None, observed: Any, apply_error: str = "") -> str:
    """Empty when ``zone`` holds ``step``; else why not. ``observed``: the zone's status object from
    the tick (vm ``ZoneStatus`` with hosts, or a Kubernetes zone's status with ``error``), or None."""
    if applied is not None and applied >= step:
        return ""
    if apply_error and (zone in apply_error or zone == MESH):
        return f"step {step} not applied: {apply_error}"
    if zone == MESH:
        return f"the mesh route is not at step {step} yet"
    if observed is None:
        return "not observed this tick (the zone could not be asked)"
    hosts = getattr(observed, "hosts", None)
    if hosts is not None:
        for h in hosts:
            if not h.reachable:
                error = h.error or "no answer"
                return f"unreachable: {error}" if h.target in error else f"unreachable: {h.target}: {error}"
        for h in hosts:
            if h.error:
                return f"{h.target}: agent: {h.error}"
        for h in hosts:
            if h.applied_step is None or h.applied_step < step:
                at = "no step yet" if h.applied_step is None else f"step {h.applied_step}"
                return f"{h.target} at {at} (health {h.health})"
        return f"waiting for step {step}"
    error = getattr(observed, "error", "")
    if error:
        return error
    return f"Flux has not applied step {step} yet"


def reasons(step: int, applied: dict[str, int | None], zones: dict[str, Any], apply_error: str = "") -> dict[str, str]:
    """zone -> why it is not at ``step``, for every zone that is not."""
    out = {}
    for z, got in applied.items():
        why = zone_reason(z, step, got, zones.get(z), apply_error)
        if why:
            out[z] = why
    return out
