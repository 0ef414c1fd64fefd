"""decide(): every phase transition, ladders, A/B, blue/green, mirroring, thresholds, gates."""

from __future__ import annotations

import math

import pytest

from federation.core.decide import decide, target_of
from federation.core.spec import WebhookType
from federation.core.state import (
    CallHooks,
    CheckResult,
    Emit,
    MetricSample,
    Phase,
    RolloutStatus,
    SetWeights,
)
from federation.core.weights import Subset
from tests.unit.builders import Driver, asks, canary, good_metrics, observe


def weights_of(d) -> list[int]:
    return [a.canary_weight for a in d.actions if isinstance(a, SetWeights)]


def all_weights(driver: Driver) -> list[int]:
    return [w for d in driver.decisions for w in weights_of(d)]


def run_to_end(driver: Driver, max_ticks: int = 200, **obs) -> None:
    for _ in range(max_ticks):
        driver.tick(60.0, **obs)
        if driver.status.phase in (Phase.SUCCEEDED, Phase.FAILED):
            return
    raise AssertionError(f"no end state after {max_ticks} ticks: {driver.status}")


# ----------------------------------------------------------------------------- phases


def test_initializing_commits_primary_only_then_initialized():
    d = Driver(canary())
    first = d.tick()
    sw = [a for a in first.actions if isinstance(a, SetWeights)]
    assert len(sw) == 1 and sw[0].step == 1 and sw[0].canary_weight == 0
    assert dict(sw[0].weights)[Subset("vms", "v1")] == 10000
    assert d.status.phase is Phase.INITIALIZING
    d.tick(applied=0)  # zones have not applied step 1 yet
    assert d.status.phase is Phase.INITIALIZING and "have not applied step 1" in d.status.message
    d.tick()
    d.tick()
    assert d.status.phase is Phase.INITIALIZED


def test_initializing_waits_for_primary_readiness():
    d = Driver(canary())
    d.tick()
    status = d.status
    obs = observe(d.spec, status)
    obs = type(obs)(spec=obs.spec, applied=obs.applied, readiness={}, metrics=obs.metrics)
    out = decide(status, obs, 2000.0)
    assert out.status.phase is Phase.INITIALIZING and "not ready" in out.status.message


@pytest.mark.parametrize(
    ("analysis", "expected"),
    [
        ({"stepWeight": 20, "maxWeight": 60}, [0, 2000, 4000, 6000, 10000, 10000]),
        ({"stepWeight": 25, "maxWeight": 60}, [0, 2500, 5000, 6000, 10000, 10000]),
        ({"stepWeight": 10, "maxWeight": None, "stepWeights": None}, [0, *range(1000, 10001, 1000), 10000]),
        ({"stepWeight": None, "maxWeight": None, "stepWeights": [1, 5, 25, 50]}, [0, 100, 500, 2500, 5000, 10000, 10000]),
        ({"stepWeight": 20, "maxWeight": 60, "stepWeightPromotion": 20}, [0, 2000, 4000, 6000, 8000, 10000, 10000]),
    ],
    ids=["step+max", "step-capped-at-max", "step-default-max-100", "stepWeights", "stepWeightPromotion"],
)
def test_canary_ladders_reach_success(analysis, expected):
    d = Driver(canary(analysis))
    d.initialise()
    run_to_end(d)
    assert d.status.phase is Phase.SUCCEEDED
    assert all_weights(d)[1:] == expected  # first SetWeights is the initialising commit
    assert d.status.primary_version == "v2"
    finalise = [a for dd in d.decisions for a in dd.actions if isinstance(a, SetWeights) and a.stage == "finalising"]
    assert finalise and finalise[0].retire == (Subset("vms", "v1"),)


def test_phases_seen_in_order_for_a_canary():
    d = Driver(canary({"stepWeightPromotion": 50}))
    seen = [d.status.phase]
    d.initialise()
    seen.append(d.status.phase)
    for _ in range(40):
        d.tick(60)
        if d.status.phase != seen[-1]:
            seen.append(d.status.phase)
        if d.status.phase is Phase.SUCCEEDED:
            break
    assert seen == [Phase.INITIALIZING, Phase.INITIALIZED, Phase.PROGRESSING, Phase.PROMOTING,
                    Phase.FINALISING, Phase.SUCCEEDED]


def test_analysis_waits_for_convergence_in_every_zone_then_one_interval():
    d = Driver(canary())
    d.initialise()
    d.tick()  # start: step at 0%
    step = d.status.step
    # one zone lags: no analysis however long we wait (within the deadline)
    for _ in range(5):
        obs = observe(d.spec, d.status)
        obs = type(obs)(spec=obs.spec, applied={**obs.applied, "onprem": step - 1},
                        readiness=obs.readiness, metrics=obs.metrics)
        d.now += 60
        out = decide(d.status, obs, d.now)
        assert not weights_of(out) and out.status.step == step
        assert "onprem" in out.status.message
        d.status = out.status
    d.tick()  # converged now: the interval starts
    assert d.status.converged_at == d.now and not d.decisions[-1].actions
    d.tick(59)
    assert not weights_of(d.decisions[-1])
    d.tick(1)
    assert weights_of(d.decisions[-1]) == [2000]


def test_unreachable_zone_counts_as_not_converged():
    d = Driver(canary())
    d.initialise()
    d.tick()
    obs = observe(d.spec, d.status)
    obs = type(obs)(spec=obs.spec, applied={**obs.applied, "vms": None}, readiness=obs.readiness,
                    metrics=obs.metrics)
    out = decide(d.status, obs, d.now + 60)
    assert out.status.converged_at is None and "vms" in out.status.message


# ----------------------------------------------------------------------------- failures


def test_failed_checks_counted_and_rollback_at_threshold():
    spec = canary({"threshold": 3})
    d = Driver(spec)
    d.initialise()
    d.start_canary()
    bad = good_metrics(spec, 90.0)
    d.tick(60, metrics=bad)
    assert d.status.failed_checks == 1 and d.status.phase is Phase.PROGRESSING
    d.tick(60)  # a pass in between does not reset the count (Flagger counts within the run)
    assert d.status.failed_checks == 1
    d.tick()  # converge the new step
    d.tick(60, metrics=bad)
    assert d.status.failed_checks == 2
    out = d.tick(60, metrics=bad)
    assert d.status.phase is Phase.FAILED and d.status.failed_checks == 3
    sw = [a for a in out.actions if isinstance(a, SetWeights)]
    assert sw[0].canary_weight == 0 and set(sw[0].retire) == {Subset("eks", "v2"), Subset("onprem", "v2")}
    assert all(w == 0 for s, w in sw[0].weights if s.version == "v2")
    assert any(isinstance(a, CallHooks) and a.type is WebhookType.POST_ROLLOUT for a in out.actions)
    assert any(isinstance(a, Emit) and a.severity == "error" for a in out.actions)


@pytest.mark.parametrize("value", [None, math.nan], ids=["empty", "nan"])
def test_no_data_is_a_failed_check_by_default(value):
    spec = canary({"threshold": 5})
    d = Driver(spec)
    d.initialise()
    d.start_canary()
    samples = tuple(MetricSample(s.metric, s.zone, value, reason="empty result") for s in good_metrics(spec))
    d.tick(60, metrics=samples)
    assert d.status.failed_checks == 1
    assert any(c.outcome == "nodata" and c.message == "empty result" for c in d.status.last_checks)


def test_no_data_hold_holds_without_counting_then_deadline_rolls_back():
    spec = canary({"metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}, "noData": "hold"}]},
                  progressDeadlineSeconds=300)
    d = Driver(spec)
    d.initialise()
    d.start_canary()
    empty = tuple(MetricSample(s.metric, s.zone, None, reason="Prometheus unreachable") for s in good_metrics(spec))
    d.tick(60, metrics=empty)
    assert d.status.failed_checks == 0 and d.status.held_since == d.now and d.status.canary_weight == 2000
    for _ in range(4):
        d.tick(60, metrics=empty)
        assert d.status.phase is Phase.PROGRESSING
    d.tick(61, metrics=empty)  # 301 s held > progressDeadlineSeconds 300
    assert d.status.phase is Phase.FAILED and "deadline" in d.status.message


def test_zone_failure_fails_the_check_while_global_passes():
    spec = canary({"threshold": 1})
    d = Driver(spec)
    d.initialise()
    d.start_canary()
    samples = tuple(MetricSample(s.metric, s.zone, 95.0 if s.zone == "onprem" else 99.5, requests=500)
                    for s in good_metrics(spec))
    d.tick(60, metrics=samples)
    assert d.status.phase is Phase.FAILED
    failed = [c for c in d.status.last_checks if c.outcome == "fail"]
    assert [(c.zone, c.value) for c in failed] == [("onprem", 95.0)]
    assert any(c.zone is None and c.outcome == "pass" for c in d.status.last_checks)


@pytest.mark.parametrize(
    ("scope", "zone_bad", "global_bad", "fails"),
    [
        ("both", True, False, True),
        ("both", False, True, True),
        ("global", True, False, False),
        ("global", False, True, True),
        ("zone", True, False, True),
        ("zone", False, True, False),
    ],
)
def test_metric_scope(scope, zone_bad, global_bad, fails):
    spec = canary({"threshold": 1, "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}, "scope": scope}]})
    d = Driver(spec)
    d.initialise()
    d.start_canary()
    samples = tuple(MetricSample(s.metric, s.zone,
                                 90.0 if (s.zone is None and global_bad) or (s.zone == "eks" and zone_bad) else 99.9,
                                 requests=100) for s in good_metrics(spec))
    d.tick(60, metrics=samples)
    assert (d.status.phase is Phase.FAILED) is fails


def test_idle_zone_below_min_requests_is_no_data_not_a_pass():
    spec = canary({"threshold": 1, "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}, "minRequests": 50}]})
    d = Driver(spec)
    d.initialise()
    d.start_canary()
    samples = tuple(MetricSample(s.metric, s.zone, 100.0, requests=3 if s.zone == "eks" else 500)
                    for s in good_metrics(spec))
    d.tick(60, metrics=samples)
    assert d.status.phase is Phase.FAILED
    assert [c.zone for c in d.status.last_checks if c.outcome == "nodata"] == ["eks"]


def test_max_threshold_metric():
    spec = canary({"threshold": 1, "metrics": [{"name": "request-duration", "thresholdRange": {"max": 500}}]})
    d = Driver(spec)
    d.initialise()
    d.start_canary()
    d.tick(60, metrics=good_metrics(spec, 750.0))
    assert d.status.phase is Phase.FAILED and "750 > max 500" in d.status.message


def test_progress_deadline_rolls_back_a_step_that_never_converges():
    spec = canary(progressDeadlineSeconds=120)
    d = Driver(spec)
    d.initialise()
    d.tick()
    d.tick(60, applied=d.status.step - 1)
    assert d.status.phase is Phase.PROGRESSING
    d.tick(61, applied=d.status.step - 1)
    assert d.status.phase is Phase.FAILED and "progress deadline" in d.status.message


def test_progress_deadline_rolls_back_a_canary_never_ready():
    spec = canary(progressDeadlineSeconds=120)
    d = Driver(spec)
    d.initialise()
    d.tick()
    d.tick(100, ready=False)
    assert d.status.phase is Phase.PROGRESSING and "not ready" in d.status.message
    d.tick(30, ready=False)
    assert d.status.phase is Phase.FAILED


def test_canary_workload_past_its_own_progress_deadline_rolls_back_at_once():
    spec = canary(progressDeadlineSeconds=600)
    d = Driver(spec)
    d.initialise()
    d.start_canary()
    weight = d.status.canary_weight
    d.tick(5, canary_failed={"vms": "deployment apps/frontend-v1: ProgressDeadlineExceeded"})
    assert d.status.phase is Phase.PROGRESSING and d.status.canary_weight == weight  # not a canary zone here
    zone = spec.canary.zones[0]
    d.tick(5, canary_failed={zone: "deployment apps/frontend-v2: ProgressDeadlineExceeded"})
    assert d.status.phase is Phase.FAILED and d.status.canary_weight == 0
    assert "canary cannot progress" in d.status.message and zone in d.status.message


def test_compare_primary_verdicts():
    spec = canary({"threshold": 1, "metrics": [{"name": "request-duration", "compare": "primary", "scope": "global"}]})
    d = Driver(spec)
    d.initialise()
    d.start_canary()
    d.tick(60, metrics=(MetricSample("request-duration", None, 10.0, comparison="marginal"),))
    assert d.status.phase is Phase.PROGRESSING and d.status.held_since is not None
    d.tick(60, metrics=(MetricSample("request-duration", None, 10.0, comparison="pass"),))
    assert d.status.canary_weight == 4000
    d.tick()
    d.tick(60, metrics=(MetricSample("request-duration", None, 10.0, comparison="fail"),))
    assert d.status.phase is Phase.FAILED


# ----------------------------------------------------------------------------- strategies


def test_ab_testing_routes_matched_traffic_for_iterations_then_promotes():
    spec = canary({"stepWeight": None, "maxWeight": None, "iterations": 3,
                   "match": [{"headers": {"x-canary": {"exact": "insider"}}}]})
    d = Driver(spec)
    d.initialise()
    start = d.tick()
    sw = [a for a in start.actions if isinstance(a, SetWeights)][0]
    assert sw.matched and sw.canary_weight == 0
    d.tick()
    d.tick(60)
    d.tick(60)
    assert d.status.iterations == 2 and d.status.phase is Phase.PROGRESSING
    out = d.tick(60)
    assert d.status.phase is Phase.PROMOTING
    assert weights_of(out) == [10000]
    run_to_end(d)
    assert d.status.phase is Phase.SUCCEEDED


def test_blue_green_runs_iterations_with_no_canary_traffic():
    spec = canary({"stepWeight": None, "maxWeight": None, "iterations": 2})
    d = Driver(spec)
    d.initialise()
    d.tick()
    d.tick()
    d.tick(60)
    assert d.status.canary_weight == 0 and not d.status.matched and d.status.iterations == 1
    out = d.tick(60)
    assert weights_of(out) == [10000] and d.status.phase is Phase.PROMOTING


def test_blue_green_with_mirroring_mirrors_during_iterations():
    spec = canary({"stepWeight": None, "maxWeight": None, "iterations": 2, "mirror": True, "mirrorWeight": 50})
    d = Driver(spec)
    d.initialise()
    out = d.tick()
    sw = [a for a in out.actions if isinstance(a, SetWeights)][0]
    assert (sw.canary_weight, sw.mirror_weight) == (0, 5000)


def test_canary_mirrors_before_the_first_weight_step():
    spec = canary({"mirror": True})
    d = Driver(spec)
    d.initialise()
    out = d.tick()
    sw = [a for a in out.actions if isinstance(a, SetWeights)][0]
    assert (sw.canary_weight, sw.mirror_weight) == (0, 10000)
    d.tick()
    out = d.tick(60)
    sw = [a for a in out.actions if isinstance(a, SetWeights)][0]
    assert (sw.canary_weight, sw.mirror_weight) == (2000, 0)


def test_skip_analysis_promotes_at_once():
    d = Driver(canary(skipAnalysis=True))
    d.initialise()
    out = d.tick()
    assert d.status.phase is Phase.PROMOTING and weights_of(out) == [10000]
    run_to_end(d)
    assert d.status.phase is Phase.SUCCEEDED


def test_suspend_does_nothing():
    spec = canary(suspend=True)
    status = RolloutStatus(phase=Phase.PROGRESSING, step=3, canary_weight=2000, target="x")
    out = decide(status, observe(spec, status), 5000.0)
    assert out.actions == () and out.status.canary_weight == 2000 and out.status.message == "suspended"
    assert asks(spec, status, 5000.0).hooks == () and not asks(spec, status, 5000.0).metrics


def test_new_canary_version_mid_rollout_restarts_analysis():
    d = Driver(canary())
    d.initialise()
    d.tick()
    d.tick()
    d.tick(60)
    assert d.status.canary_weight == 2000
    d.spec = canary(canary={"version": "v2.1", "zones": ["eks", "onprem"]})
    out = d.tick()
    assert weights_of(out) == [0] and d.status.canary_version == "v2.1" and d.status.failed_checks == 0


def test_failed_rollout_stays_failed_until_a_new_version():
    d = Driver(canary({"threshold": 1}))
    d.initialise()
    d.start_canary()
    d.tick(60, metrics=good_metrics(d.spec, 1.0))
    assert d.status.phase is Phase.FAILED
    assert decide(d.status, observe(d.spec, d.status), d.now + 600).actions == ()
    d.spec = canary({"threshold": 1}, canary={"version": "v2.1", "zones": ["eks"]})
    d.tick()
    assert d.status.phase is Phase.PROGRESSING and d.status.target == target_of(d.spec)


# ----------------------------------------------------------------------------- webhooks


def hooks(*types: str):
    return {"webhooks": [{"name": t, "type": t, "url": f"http://hooks.test/{t}"} for t in types]}


def test_confirm_rollout_gate_waits_then_starts():
    spec = canary(hooks("confirm-rollout"))
    d = Driver(spec)
    d.initialise()
    assert WebhookType.CONFIRM_ROLLOUT in asks(spec, d.status, d.now).hooks
    d.tick(hooks={"confirm-rollout": False})
    assert d.status.phase is Phase.WAITING and not weights_of(d.decisions[-1])
    d.tick(10, hooks={"confirm-rollout": False})
    assert d.status.phase is Phase.WAITING
    d.tick(10, hooks={"confirm-rollout": True})
    assert d.status.phase is Phase.PROGRESSING and weights_of(d.decisions[-1]) == [0]


def test_pre_rollout_failure_counts_and_is_retried():
    spec = canary({**hooks("pre-rollout"), "threshold": 2})
    d = Driver(spec)
    d.initialise()
    d.tick()
    d.tick()
    assert WebhookType.PRE_ROLLOUT not in asks(spec, d.status, d.now).hooks  # not due yet
    assert WebhookType.PRE_ROLLOUT in asks(spec, d.status, d.now + 60).hooks
    d.tick(60, hooks={"pre-rollout": False})
    assert d.status.failed_checks == 1 and d.status.canary_weight == 0
    d.tick(60, hooks={"pre-rollout": True})
    assert d.status.pre_rollout_passed and d.status.canary_weight == 2000
    d.tick()
    assert WebhookType.PRE_ROLLOUT not in asks(spec, d.status, d.now + 60).hooks


def test_rollout_hook_failure_is_a_failed_check():
    spec = canary({**hooks("rollout"), "threshold": 1})
    d = Driver(spec)
    d.initialise()
    d.start_canary()
    d.tick(60, hooks={"rollout": False})
    assert d.status.phase is Phase.FAILED and "rollout hook" in d.status.message


def test_confirm_traffic_increase_holds_the_step():
    spec = canary(hooks("confirm-traffic-increase"))
    d = Driver(spec)
    d.initialise()
    d.tick()
    d.tick()
    assert WebhookType.CONFIRM_TRAFFIC_INCREASE in asks(spec, d.status, d.now + 60).hooks
    d.tick(60, hooks={"confirm-traffic-increase": False})
    assert d.status.canary_weight == 0 and d.status.failed_checks == 0
    d.tick(60, hooks={"confirm-traffic-increase": True})
    assert d.status.canary_weight == 2000


def test_confirm_promotion_waits_in_waiting_promotion_and_keeps_checking():
    spec = canary({**hooks("confirm-promotion"), "stepWeight": 50, "maxWeight": 50, "threshold": 2})
    d = Driver(spec)
    d.initialise()
    d.tick()
    d.tick()
    d.tick(60)  # 50%
    d.tick()
    assert WebhookType.CONFIRM_PROMOTION in asks(spec, d.status, d.now + 60).hooks
    d.tick(60, hooks={"confirm-promotion": False})
    assert d.status.phase is Phase.WAITING_PROMOTION
    d.tick(60, hooks={"confirm-promotion": False}, metrics=good_metrics(spec, 50.0))
    assert d.status.phase is Phase.WAITING_PROMOTION and d.status.failed_checks == 1
    d.tick(60, hooks={"confirm-promotion": True})
    assert d.status.phase is Phase.PROMOTING


def test_rollback_hook_rolls_back_while_progressing_and_waiting():
    spec = canary(hooks("rollback"))
    d = Driver(spec)
    d.initialise()
    d.tick()
    assert WebhookType.ROLLBACK in asks(spec, d.status, d.now).hooks
    d.tick(hooks={"rollback": True})
    assert d.status.phase is Phase.FAILED and "rollback hook" in d.status.message
    spec2 = canary(hooks("rollback", "confirm-rollout"), canary={"version": "v9", "zones": ["eks"]})
    d.spec = spec2
    d.tick(hooks={"confirm-rollout": False})
    assert d.status.phase is Phase.WAITING
    d.tick(hooks={"confirm-rollout": False, "rollback": True})
    assert d.status.phase is Phase.FAILED


def test_post_rollout_called_on_success_and_event_on_every_transition():
    spec = canary(hooks("post-rollout", "event"))
    d = Driver(spec)
    d.initialise()
    run_to_end(d)
    calls = [a for dd in d.decisions for a in dd.actions if isinstance(a, CallHooks)]
    assert [c.type for c in calls] == [WebhookType.POST_ROLLOUT]
    reasons = [a.reason for dd in d.decisions for a in dd.actions if isinstance(a, Emit)]
    assert reasons[0] == "Initialized" and reasons[-1] == "Succeeded" and "Promoting" in reasons
    # event hooks are never "needed" as gates: they are fed from Emit actions by the executor
    assert all(WebhookType.EVENT not in asks(spec, dd.status, d.now).hooks for dd in d.decisions)


def test_unanswered_gate_is_a_no():
    spec = canary(hooks("confirm-traffic-increase"))
    d = Driver(spec)
    d.initialise()
    d.tick()
    d.tick()
    d.tick(60)  # hook result missing from observations
    assert d.status.canary_weight == 0 and "not answered" in d.status.message


def test_status_round_trips_storage():
    d = Driver(canary({"threshold": 5}))
    d.initialise()
    d.start_canary()
    d.tick(60, metrics=good_metrics(d.spec, 1.0))
    stored = d.status.for_storage()
    import json

    assert RolloutStatus.from_storage(json.loads(json.dumps(stored))) == d.status


def test_weight_zero_iteration_runs_only_pre_rollout_like_flagger():
    spec = canary(hooks("pre-rollout", "rollout"))
    d = Driver(spec)
    d.initialise()
    d.tick()
    d.tick()
    n = asks(spec, d.status, d.now + 60)
    assert not n.metrics and n.hooks == (WebhookType.PRE_ROLLOUT,)
    empty = tuple(MetricSample(m.metric, m.zone, None) for m in good_metrics(spec))
    d.tick(60, metrics=empty, hooks={"pre-rollout": True})  # no metrics, no load test: still advances
    assert d.status.canary_weight == 2000 and d.status.failed_checks == 0
    d.tick()
    n = asks(spec, d.status, d.now + 60)
    assert n.metrics and WebhookType.ROLLOUT in n.hooks and WebhookType.PRE_ROLLOUT not in n.hooks


# ----------------------------------------------------------------------------- operator commands


def command(d: Driver, cmd: str, advance: float = 0.0):
    from dataclasses import replace

    d.now += advance
    obs = replace(observe(d.spec, d.status), command=cmd)
    out = decide(d.status, obs, d.now)
    d.status = out.status
    d.decisions.append(out)
    return out


def test_pause_holds_everything_until_resume():
    d = Driver(canary())
    d.initialise()
    d.start_canary()
    command(d, "pause")
    assert d.status.paused
    d.run(5)
    assert d.status.canary_weight == 2000 and all(not weights_of(x) for x in d.decisions[-5:])
    assert asks(d.spec, d.status, d.now + 600) == asks(d.spec, d.status.with_(phase=Phase.INITIALIZED, paused=True), 0)
    command(d, "abort")
    assert d.status.phase is Phase.PROGRESSING  # ignored while paused
    command(d, "resume")
    assert not d.status.paused
    d.tick(60)
    assert d.status.canary_weight == 4000


def test_abort_rolls_back_and_retry_starts_again():
    d = Driver(canary())
    d.initialise()
    d.start_canary()
    out = command(d, "abort")
    assert d.status.phase is Phase.FAILED and weights_of(out) == [0] and "aborted by operator" in d.status.message
    out = command(d, "retry")
    assert d.status.phase is Phase.PROGRESSING and weights_of(out) == [0] and d.status.failed_checks == 0


def test_promote_skips_the_remaining_analysis():
    d = Driver(canary())
    d.initialise()
    d.start_canary()
    out = command(d, "promote")
    assert d.status.phase is Phase.PROMOTING and weights_of(out) == [10000]
    run_to_end(d)
    assert d.status.phase is Phase.SUCCEEDED
    assert command(d, "promote").actions == ()


# ----------------------------------------------------------------------------- canary revisions (checksum)


def _with_checksum(spec, checksum: str):
    return spec.model_copy().with_checksum(checksum)


def test_a_new_canary_revision_restarts_the_analysis_mid_rollout():
    spec = _with_checksum(canary(), "aaaa")
    d = Driver(spec)
    d.initialise()
    d.start_canary()
    d.tick(60)
    assert d.status.phase is Phase.PROGRESSING and d.status.canary_weight > 0 and d.status.target.endswith("#aaaa")
    d.spec = _with_checksum(spec, "bbbb")  # an image tag bump of the canary version in a zone repo
    dec = d.tick()
    assert d.status.phase is Phase.PROGRESSING and d.status.canary_weight == 0 and d.status.target.endswith("#bbbb")
    assert any(isinstance(a, Emit) and a.reason == "Restart" and "bbbb" in a.message for a in dec.actions)


def test_a_fixed_revision_after_a_rollback_starts_a_new_rollout():
    spec = _with_checksum(canary({"threshold": 1}), "aaaa")
    d = Driver(spec)
    d.initialise()
    d.start_canary()
    d.tick(60, metrics=good_metrics(spec, 50.0))
    assert d.status.phase is Phase.FAILED
    d.tick(60)
    assert d.status.phase is Phase.FAILED  # nothing changed: stays rolled back
    d.spec = _with_checksum(spec, "cccc")  # the team fixes the build: same version name, new artifact
    d.tick()
    assert d.status.phase is Phase.PROGRESSING and d.status.target.endswith("#cccc") and d.status.failed_checks == 0


def test_a_promoted_version_changed_in_place_is_flagged_not_rolled_out_again():
    spec = _with_checksum(canary({"stepWeight": 50, "maxWeight": 50, "stepWeightPromotion": 100}), "aaaa")
    d = Driver(spec)
    d.initialise()
    d.start_canary()
    d.run(12)
    assert d.status.phase is Phase.SUCCEEDED
    d.spec = _with_checksum(spec, "dddd")
    dec = d.tick()
    assert d.status.phase is Phase.SUCCEEDED and d.status.target.endswith("#dddd")
    assert not any(isinstance(a, SetWeights) for a in dec.actions)
    assert any(isinstance(a, Emit) and a.reason == "ChangedInPlace" for a in dec.actions)


def test_a_target_stored_without_checksum_is_the_same_rollout():
    spec = canary()
    d = Driver(spec)
    d.initialise()
    d.start_canary()
    step = d.status.step
    d.spec = _with_checksum(spec, "eeee")  # a hub upgraded to checksums reads the old status
    d.tick(60)
    assert d.status.phase is Phase.PROGRESSING and d.status.step > step


@pytest.mark.parametrize("kind", ["rollout", "pre-rollout"])
def test_mute_alert_silences_the_failing_hooks_alert_but_not_the_rollback(kind: str):
    spec = canary({"webhooks": [{"name": "load", "type": kind, "url": "http://hooks.test/load", "muteAlert": True},
                                {"name": "smoke", "type": kind, "url": "http://hooks.test/smoke"}],
                   "threshold": 3})
    d = Driver(spec)
    d.initialise()
    if kind == "rollout":
        d.start_canary()
    else:
        d.tick()
        d.tick()

    def failed_check_events() -> list[Emit]:
        return [a for a in d.decisions[-1].actions if isinstance(a, Emit)]

    d.tick(60, hooks={"load": False, "smoke": True})
    (muted,) = failed_check_events()
    assert muted.reason == "FailedCheck" and "'load'" in muted.message and muted.alert is False
    d.tick(60, hooks={"load": True, "smoke": False})
    (loud,) = failed_check_events()
    assert loud.reason == "FailedCheck" and "'smoke'" in loud.message and loud.alert is True
    d.tick(60, hooks={"load": False, "smoke": True})
    assert d.status.phase is Phase.FAILED
    rollback = [e for e in failed_check_events() if e.reason == "Rollback"]
    assert rollback and rollback[0].alert is True


def test_mute_alert_on_a_confirm_gate_silences_its_waiting_alert():
    spec = canary({"webhooks": [{"name": "gate", "type": "confirm-rollout", "url": "http://h.test/", "muteAlert": True}]})
    d = Driver(spec)
    d.initialise()
    d.tick(hooks={"gate": False})
    (waiting,) = [a for a in d.decisions[-1].actions if isinstance(a, Emit)]
    assert waiting.reason == "Waiting" and waiting.alert is False


def test_a_dry_run_metric_is_recorded_but_never_fails_or_holds():
    from federation.core import steps

    base = canary()
    metrics = [m.model_dump(by_alias=True, exclude_unset=True) for m in base.analysis.metrics]
    metrics.append({"name": "errors", "query": "sum(errors_total)", "thresholdRange": {"max": 1}, "dryRun": True,
                    "noData": "hold"})
    spec = canary({"threshold": 1, "metrics": metrics})
    d = Driver(spec)
    d.initialise()
    d.start_canary()
    weight = d.status.canary_weight
    samples = tuple(MetricSample(s.metric, s.zone, 50.0, requests=500) if s.metric == "errors" and s.zone else
                    MetricSample(s.metric, s.zone, None, "empty result") if s.metric == "errors" else s
                    for s in good_metrics(spec))
    d.tick(60, metrics=samples)
    assert d.status.phase is Phase.PROGRESSING and d.status.failed_checks == 0  # advanced anyway
    assert d.status.canary_weight > weight and d.status.held_since is None
    dry = [c for c in d.status.last_checks if c.metric == "errors"]
    assert {(c.zone, c.outcome, c.dry_run) for c in dry} == {(None, "hold", True), ("eks", "fail", True),
                                                             ("onprem", "fail", True)}
    (step,) = [a for a in d.decisions[-1].actions if isinstance(a, SetWeights)]
    assert "errors@eks fail (dry-run): 50 > max 1" in step.reason  # said in the commit message
    assert "errors@eks=50:fail(dry-run)" in steps.checks_text(step.checks)  # and in its trailer
    stored = [CheckResult.from_storage(c.for_storage()) for c in dry]
    assert stored == dry


# ----------------------------------------------------------------------------- a new version mid-rollout


def test_a_new_version_mid_rollout_retires_the_old_canary():
    """Found by the state machine (test_decide_machine): v2 at 20% in eks and onprem, v2.1 arrives;
    the restart's step named only v1 and v2.1, so the zones' serving kept v2 at its weight — a share
    of each canary zone's traffic no analysis looked at, and its instances running for good."""
    d = Driver(canary())
    d.initialise()
    d.start_canary()
    assert d.status.canary_weight == 2000
    d.spec = canary(canary={"version": "v2.1", "zones": ["eks", "onprem"]})
    out = d.tick()
    (step,) = [a for a in out.actions if isinstance(a, SetWeights)]
    assert step.stage == "initial" and step.canary_weight == 0
    assert step.retire == (Subset("eks", "v2"), Subset("onprem", "v2"))
    # later steps of v2.1 retire nothing more
    d.run(3)
    later = [a for dd in d.decisions[-3:] for a in dd.actions if isinstance(a, SetWeights)]
    assert later and all(a.retire == () for a in later)


def test_a_new_version_waiting_for_approval_retires_the_old_canary_when_it_starts_or_rolls_back():
    spec = canary(hooks("confirm-rollout"))
    d = Driver(spec)
    d.initialise()
    d.tick(hooks={"confirm-rollout": True})
    d.tick(hooks={"confirm-rollout": True})
    d.tick(60, hooks={"confirm-rollout": True})
    assert d.status.canary_weight == 2000
    d.spec = canary(hooks("confirm-rollout"), canary={"version": "v3", "zones": ["eks", "onprem"]})
    d.tick(hooks={"confirm-rollout": False})
    assert d.status.phase is Phase.WAITING and d.status.canary_version == "v2"  # still deployed
    d.tick(10, hooks={"confirm-rollout": False})
    assert d.status.canary_version == "v2"
    waiting = d.status
    out = d.tick(10, hooks={"confirm-rollout": True})
    (step,) = [a for a in out.actions if isinstance(a, SetWeights)]
    assert d.status.phase is Phase.PROGRESSING and d.status.canary_version == "v3"
    assert step.retire == (Subset("eks", "v2"), Subset("onprem", "v2"))
    d.status = waiting
    out = command(d, "abort")
    (step,) = [a for a in out.actions if isinstance(a, SetWeights)]
    assert d.status.phase is Phase.FAILED and Subset("eks", "v2") in step.retire and Subset("eks", "v3") in step.retire


def test_a_version_waiting_from_the_start_retires_nothing_else():
    spec = canary(hooks("confirm-rollout"))
    d = Driver(spec)
    d.initialise()
    d.tick(hooks={"confirm-rollout": False})
    d.spec = canary(hooks("confirm-rollout"), canary={"version": "v3", "zones": ["eks"]})
    d.tick(hooks={"confirm-rollout": False})
    assert d.status.canary_version == "v3"
    out = d.tick(hooks={"confirm-rollout": True})
    (step,) = [a for a in out.actions if isinstance(a, SetWeights)]
    assert step.retire == ()


def test_abort_while_initialising_is_not_undone_by_the_next_tick():
    """Found by the state machine: aborted while Initializing (no target stored yet), the rollout
    was Failed for one tick, then the next took the spec for a new target and started the canary."""
    d = Driver(canary())
    d.tick()
    assert d.status.phase is Phase.INITIALIZING
    command(d, "abort")
    assert d.status.phase is Phase.FAILED and d.status.target == target_of(d.spec)
    d.run(3)
    assert d.status.phase is Phase.FAILED and not any(weights_of(x) for x in d.decisions[-3:])
    out = command(d, "retry")
    assert d.status.phase is Phase.PROGRESSING and weights_of(out) == [0]


def test_promote_as_a_new_version_arrives_does_not_promote_the_new_version_unanalysed():
    """Found by the state machine: the operator promotes v2 as v2.1 lands in Git; the command ran
    against the new spec before the restart, so v2.1 went to 100% with no analysis (and v2 stayed
    in the zones' serving, the status still naming it)."""
    d = Driver(canary())
    d.initialise()
    d.start_canary()
    d.spec = canary(canary={"version": "v2.1", "zones": ["eks", "onprem"]})
    out = command(d, "promote")
    assert not weights_of(out) and "promote ignored" in d.status.message and d.status.phase is Phase.PROGRESSING
    out = d.tick()
    assert weights_of(out) == [0] and d.status.canary_version == "v2.1"


def test_abort_as_a_new_version_arrives_fails_the_new_version_too():
    """Found by the state machine: aborted as v2.1 lands, the rollback (of v2.1's subsets) stored v2's
    target, so the next tick started v2.1 anyway."""
    d = Driver(canary())
    d.initialise()
    d.start_canary()
    d.spec = canary(canary={"version": "v2.1", "zones": ["eks", "onprem"]})
    out = command(d, "abort")
    (step,) = [a for a in out.actions if isinstance(a, SetWeights)]
    assert d.status.phase is Phase.FAILED and d.status.target == target_of(d.spec)
    assert {s.version for s in step.retire} == {"v2", "v2.1"}
    d.run(3)
    assert d.status.phase is Phase.FAILED and not any(weights_of(x) for x in d.decisions[-3:])
