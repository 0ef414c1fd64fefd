"""Step records and rollout targets: the commit-trailer vocabulary round-trips, targets parse back."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from federation.core import steps
from federation.core.decide import same_target, target_of
from federation.core.state import Phase, SetWeights, Stage
from federation.core.weights import Subset
from tests.unit.builders import canary

names = st.text("abcdefghij0123456789-", min_size=1, max_size=8)
subsets = st.builds(Subset, names, names)


@given(rollout=st.builds(lambda a, b: f"{a}/{b}", names, names), step=st.integers(0, 10_000),
       stage=st.sampled_from(list(Stage)), canary_bp=st.integers(0, 10_000), mirror=st.integers(0, 10_000),
       matched=st.booleans(), weights=st.lists(st.tuples(subsets, st.integers(0, 10_000)), max_size=6),
       retire=st.lists(subsets, max_size=3), analysis=st.sampled_from(["", "m@global=99.5:pass"]),
       zones=st.lists(names, min_size=1, max_size=3), checksum=st.sampled_from(["", "0123abcd"]))
def test_a_record_round_trips_through_its_trailers(rollout, step, stage, canary_bp, mirror, matched, weights, retire,
                                                   analysis, zones, checksum):
    target = steps.RolloutTarget("v1", tuple(zones), "v2", tuple(reversed(zones)), checksum)
    rec = steps.StepRecord(rollout, step, stage, canary_bp, tuple(sorted(dict(weights).items())), target, mirror,
                           matched, tuple(retire), analysis)
    trailers = rec.to_trailers()
    assert all(k.startswith(steps.TRAILER_PREFIX) for k in trailers)
    assert steps.StepRecord.from_trailers(trailers) == rec
    # ... and through a commit message's trailer block.
    block = rec.message("frontend", "v2", "why").split("\n\n")[-1]
    assert steps.StepRecord.from_trailers(steps.parse_trailers(block)) == rec


def test_a_commit_that_is_not_a_step_has_no_record():
    assert steps.StepRecord.from_trailers({}) is None
    assert steps.StepRecord.from_trailers({steps.ROLLOUT: "shop/frontend", steps.STEP: "x", steps.STAGE: "analysis"}) is None
    assert steps.StepRecord.from_trailers({steps.ROLLOUT: "shop/frontend", steps.STEP: "3", steps.STAGE: "nope"}) is None


def test_a_step_from_an_action_and_back():
    spec = canary().with_checksum("abc123")
    action = SetWeights(4, Stage.ANALYSIS, 2500, 0, False, ((Subset("eks", "v2"), 2500), (Subset("vms", "v1"), 7500)),
                        reason="passed")
    rec = steps.StepRecord.of("shop/frontend", spec, action)
    assert str(rec.target) == target_of(spec) == "v1@vms->v2@eks,onprem#abc123"
    assert rec.action().weights == action.weights and rec.action().stage is Stage.ANALYSIS
    assert rec.identity() == {"Federation-Stage": "analysis", "Federation-Canary-Weight": "2500"}
    assert rec.message("frontend", "v2").startswith("frontend: canary v2 25% (step 4)\n")


def test_targets_parse_and_compare():
    spec = canary().with_checksum("abc123")
    assert same_target(spec, "v1@vms->v2@eks,onprem#abc123")
    assert same_target(spec, "v1@vms->v2@eks,onprem")  # stored by a hub that knew no checksum
    assert not same_target(spec, "v1@vms->v2@eks,onprem#other")
    assert not same_target(spec, "v1@vms->v3@eks,onprem")
    assert not same_target(spec, None) and not same_target(spec, "garbage")
    assert steps.RolloutTarget.parse("garbage") is None


def test_stages_say_which_phase_a_committed_step_means():
    assert Stage.ROLLBACK.phase_after(Phase.PROGRESSING) is Phase.FAILED
    assert Stage.ANALYSIS.phase_after(Phase.WAITING_PROMOTION) is Phase.WAITING_PROMOTION
    assert Stage.INITIAL.phase_after(Phase.WAITING) is Phase.PROGRESSING
    assert Stage.FINALISING.phase_after(Phase.PROMOTING) is Phase.FINALISING
    assert f"{Stage.PROMOTION}" == "promotion" and Stage.INITIAL.verb == "start"


def test_weights_text_is_decoded_once_and_skips_junk():
    assert steps.parse_weights("vms/v1=7500,eks/v2=2500,bad,x=y") == ((Subset("eks", "v2"), 2500),
                                                                     (Subset("vms", "v1"), 7500))
