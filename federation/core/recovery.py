"""``recover(spec, status, found, now)``: where a (re)started worker stands, from Git, pure.

The hub saves a rollout's status only after a step's commits and applies ran; a hub killed in
between leaves Git ahead of its store. Every repo a step touches carries the same ``StepRecord``,
so the newest step found in the mesh repo *or* any zone repo (a hub killed after the zone commits
but before the mesh commit) is adopted as is: its weights, stage and analysis figures are never
decided again. The current step is then applied once more (the commits are found, not redone),
so agents that lost state and an edge that missed a write converge.
Callers: ``hub.worker`` (first tick of a worker), tests (table-driven).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from federation.core.spec import CanarySpec
from federation.core.state import Phase, RolloutStatus, Stage
from federation.core.steps import RolloutTarget, StepRecord


@dataclass(frozen=True)
class Recovery:
    status: RolloutStatus
    reapply: StepRecord | None = None  # the current step, to apply once more
    adopted: StepRecord | None = None  # the step Git held beyond the store


def recover(spec: CanarySpec, status: RolloutStatus, found: Iterable[StepRecord], now: float) -> Recovery:
    """``found``: the newest step record of this rollout in each repo (the mesh repo's first)."""
    records = list(found)
    last = max(records, key=lambda r: r.step, default=None)
    adopted = None
    if last is not None and last.step > status.step:
        status = adopt(status, last, now)
        adopted = last
    reapply = None
    if last is not None and status.step > 0 and last.step == status.step and RolloutTarget.of(spec).same(last.target):
        reapply = last
    return Recovery(status, reapply, adopted)


def adopt(status: RolloutStatus, rec: StepRecord, now: float) -> RolloutStatus:
    """The status after a committed step the store never saw: no weight regresses, no step repeats."""
    # The initialise step (the primary takes all traffic) starts no target: the canary's rollout
    # starts after it, from Initialized, because its target is new (taken from this record, it
    # would never start: Initialized with the spec's own target waits for the next release).
    taken = rec.target if rec.stage is not Stage.INITIALISE else None
    target = str(taken) if taken is not None else status.target
    versions: dict[str, object] = {}
    if taken is not None and target != status.target:
        versions = {"primary_version": taken.primary_version, "canary_version": taken.canary_version,
                    "failed_checks": 0, "iterations": 0, "started_at": now}
    phase = rec.stage.phase_after(status.phase)
    recovered = status.with_(step=rec.step, phase=phase, target=target, **versions, canary_weight=rec.canary_weight,
                             mirror_weight=rec.mirror_weight, converged_at=None, next_analysis_at=None,
                             step_started_at=now, held_since=None, message=f"resumed from Git at step {rec.step}")
    if phase is Phase.FAILED and recovered.failed_checks < status.failed_checks:
        recovered = recovered.with_(failed_checks=status.failed_checks)
    return recovered
