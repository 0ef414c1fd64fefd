"""``rollout undo``: a new rollout back to the version promoted before the one serving now.

As ``kubectl rollout undo`` and Argo Rollouts' undo do, undo is a new rollout, not a revert of
traffic: the FederatedCanary in the mesh repo is rewritten (primary = what serves now, canary = the
previously promoted version and its zones) and committed, so Git records who went back and when.
The previous version is read from Git: the newest finalising commit of this rollout whose promoted
side is what serves now names, as its primary, what served before. Refused with a reason while a
rollout runs, when nothing was promoted before, or when a zone repo no longer defines the version.
Callers: ``Hub.undo`` (the API's ``POST .../undo``).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass

from federation import specfiles
from federation.core.spec import CanarySpec
from federation.core.state import Phase, RolloutStatus, Stage
from federation.core.steps import RolloutTarget
from federation.gitops.repo import CommitInfo


@dataclass(frozen=True)
class Side:
    version: str
    zones: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.version}@{'+'.join(self.zones)}"

    def same(self, other: Side) -> bool:
        return self.version == other.version and set(self.zones) == set(other.zones)


def _sides(target: RolloutTarget) -> tuple[Side, Side]:
    return Side(target.primary_version, target.primary_zones), Side(target.canary_version, target.canary_zones)


def serving(spec: CanarySpec, status: RolloutStatus) -> Side | str:
    """What serves now, or why undo cannot start (a rollout in flight)."""
    if status.phase is Phase.SUCCEEDED:
        return Side(spec.canary.version, tuple(spec.canary.zones))
    if status.phase is Phase.FAILED:
        return Side(spec.primary.version, tuple(spec.primary.zones))
    return f"a rollout is in progress (phase {status.phase.value}): abort it first, or wait for its end"


def previous(log: Iterable[CommitInfo], key: str, now: Side) -> Side | None:
    """The version promoted before ``now``, from the rollout's finalising commits (newest first)."""
    for c in log:
        rec = c.record
        if rec is None or rec.rollout != key or rec.stage is not Stage.FINALISING or rec.target is None:
            continue
        before, promoted = _sides(rec.target)
        if promoted.same(now):
            return before
    return None


def rewrite(text: str, key: str, primary: Side, canary: Side, skip_analysis: bool) -> str:
    """The canary file with ``key``'s FederatedCanary going from ``primary`` to ``canary``."""
    namespace, name = key.split("/", 1)
    y = specfiles.round_trip_yaml()
    docs = list(y.load_all(text))
    for d in docs:
        meta = (d or {}).get("metadata") or {}
        if d.get("kind") == "FederatedCanary" and meta.get("name") == name and \
                meta.get("namespace", "default") == namespace:
            spec = d["spec"]
            spec["primary"] = {"version": primary.version, "zones": list(primary.zones)}
            spec["canary"] = {"version": canary.version, "zones": list(canary.zones)}
            weights = spec.get("zoneWeights")
            if weights is not None and set(weights) - set(canary.zones):
                del spec["zoneWeights"]
            if skip_analysis:
                spec["skipAnalysis"] = True
            elif "skipAnalysis" in spec:
                del spec["skipAnalysis"]
    out = io.StringIO()
    y.dump_all(docs, out)
    return out.getvalue()
