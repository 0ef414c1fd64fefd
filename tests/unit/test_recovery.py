"""``core.recovery.recover``: where a restarted worker stands, from the steps Git holds (table-driven)."""

from __future__ import annotations

import pytest

from federation.core.recovery import recover
from federation.core.state import Phase, RolloutStatus, Stage
from federation.core.steps import RolloutTarget, StepRecord
from federation.core.weights import Subset
from tests.unit.builders import canary

SPEC = canary()
TARGET = RolloutTarget.of(SPEC)
OLD = RolloutTarget("v0", ("vms",), "v1", ("vms",))
NOW = 1000.0


def rec(step: int, stage: Stage = Stage.ANALYSIS, weight: int = 2000, target: RolloutTarget | None = TARGET,
        analysis: str = "") -> StepRecord:
    return StepRecord("shop/frontend", step, stage, weight, ((Subset("eks", "v2"), weight),), target,
                      analysis=analysis)


STORED = RolloutStatus(phase=Phase.PROGRESSING, step=3, canary_weight=1000, target=str(TARGET), failed_checks=1,
                       primary_version="v1", canary_version="v2", converged_at=900.0, next_analysis_at=960.0)

CASES = [
    # (name, stored status, records found (mesh repo's first), step, phase, weight, re-applied step, adopted)
    ("nothing in Git", RolloutStatus(), [], 0, Phase.INITIALIZING, 0, None, False),
    ("Git at the stored step: re-applied, nothing adopted", STORED, [rec(3, weight=1000)], 3, Phase.PROGRESSING,
     1000, 3, False),
    ("the mesh repo ahead: adopted", STORED, [rec(4), rec(4)], 4, Phase.PROGRESSING, 2000, 4, True),
    ("killed after the zone commits, before the mesh commit: the zones' step is adopted", STORED,
     [rec(3, weight=1000), rec(4, analysis="m@global=99.5:pass"), rec(4, analysis="m@global=99.5:pass")], 4,
     Phase.PROGRESSING, 2000, 4, True),
    ("a rollback committed: Failed, failed checks kept", STORED, [rec(4, Stage.ROLLBACK, 0)], 4, Phase.FAILED, 0,
     4, True),
    ("promotion committed", STORED, [rec(4, Stage.PROMOTION, 10000)], 4, Phase.PROMOTING, 10000, 4, True),
    ("the store ahead of Git (commits lost upstream): nothing adopted, nothing re-applied", STORED, [rec(2)], 3,
     Phase.PROGRESSING, 1000, None, False),
    ("another rollout's step (an older target) is adopted but not re-applied for this spec", STORED,
     [rec(4, Stage.INITIAL, 0, target=OLD)], 4, Phase.PROGRESSING, 0, None, True),
]


@pytest.mark.parametrize(("name", "status", "found", "step", "phase", "weight", "reapply", "adopted"), CASES,
                         ids=[c[0] for c in CASES])
def test_recover(name, status, found, step, phase, weight, reapply, adopted):
    r = recover(SPEC, status, found, NOW)
    assert (r.status.step, r.status.phase, r.status.canary_weight) == (step, phase, weight)
    assert (r.reapply.step if r.reapply else None) == reapply
    assert (r.adopted is not None) == adopted
    if adopted:
        assert r.status.converged_at is None and r.status.next_analysis_at is None and r.status.step_started_at == NOW
    else:
        assert r.status == status


def test_the_recorded_figures_are_reapplied_as_they_are():
    """The step adopted from the zone repos is re-applied with its own record: the mesh commit then
    carries the same trailers (figures included) as the zone commits, nothing is analysed again."""
    zone = rec(4, analysis="request-success-rate@global=99.52:pass")
    r = recover(SPEC, STORED, [rec(3, weight=1000), zone], NOW)
    assert r.reapply == zone and r.reapply.to_trailers() == zone.to_trailers()


def test_a_rollback_keeps_the_failed_checks_and_a_new_target_resets_them():
    r = recover(SPEC, STORED, [rec(4, Stage.ROLLBACK, 0)], NOW)
    assert r.status.failed_checks == 1
    other = RolloutStatus(phase=Phase.SUCCEEDED, step=3, target=str(OLD), failed_checks=2)
    r = recover(SPEC, other, [rec(4, Stage.INITIAL, 0)], NOW)
    assert r.status.target == str(TARGET) and r.status.failed_checks == 0 and r.status.canary_version == "v2"


def test_an_adopted_initialise_step_leaves_the_rollout_to_start():
    """The chaos soak (SOAK_SEED=4404): a zone repo's remote away during a rollout's initialise step,
    the step committed to some repos, adopted from Git at the next tick. It took the record's target,
    so the rollout reached Initialized with the spec's own target and never started (two rollouts
    stuck for the rest of the run); now the target stays unset and the next tick starts it."""
    from federation.core.decide import same_target

    fresh = RolloutStatus()
    r = recover(SPEC, fresh, [rec(1, Stage.INITIALISE, weight=0)], NOW)
    assert r.adopted is not None and r.status.step == 1 and r.status.phase is Phase.INITIALIZING
    assert r.status.target == fresh.target and not same_target(SPEC, r.status.target)
    assert r.reapply is not None and r.reapply.step == 1  # applied once more, as any current step
