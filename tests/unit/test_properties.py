"""Property test: any valid spec, any observation sequence — weights stay sane."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from federation.core import plan
from federation.core.decide import decide, decide_or_ask, target_of
from federation.core.spec import BASIS_POINTS, Strategy
from federation.core.state import COMMANDS, HookResult, MetricSample, Needs, Phase, RolloutStatus, SetWeights
from tests.unit.builders import canary, good_metrics, observe

percent = st.integers(min_value=1, max_value=100)


@st.composite
def analyses(draw):
    kind = draw(st.sampled_from(["step", "steps", "ab", "bg"]))
    a: dict = {"threshold": draw(st.integers(1, 4)), "stepWeight": None, "maxWeight": None}
    if kind == "step":
        a["stepWeight"] = draw(st.integers(1, 60))
        a["maxWeight"] = draw(st.integers(a["stepWeight"], 100))
    elif kind == "steps":
        a["stepWeights"] = sorted(draw(st.sets(percent, min_size=1, max_size=6)))
    else:
        a["iterations"] = draw(st.integers(1, 4))
        if kind == "ab":
            a["match"] = [{"headers": {"x-canary": {"exact": "1"}}}]
    if draw(st.booleans()):
        a["stepWeightPromotion"] = draw(st.integers(1, 100))
    if draw(st.booleans()):
        a["mirror"] = True
    a["metrics"] = [{"name": "request-success-rate", "thresholdRange": {"min": 99},
                     "noData": draw(st.sampled_from(["fail", "hold"]))}]
    return a


tick = st.tuples(
    st.sampled_from([0.0, 5.0, 60.0, 400.0]),      # clock advance
    st.sampled_from(["ok", "bad", "empty", "zone-bad"]),  # metrics
    st.booleans(),                                 # converged
    st.booleans(),                                 # ready
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(analyses(), st.integers(1, 3), st.lists(tick, min_size=1, max_size=60), st.booleans())
def test_weights_invariants(analysis, n_zones, ticks, skip):
    zones = ["eks", "onprem", "edge"][:n_zones]
    spec = canary(analysis, canary={"version": "v2", "zones": zones}, skipAnalysis=skip,
                  progressDeadlineSeconds=900)
    top = plan.max_weight_bp(spec.analysis) if spec.analysis.strategy is Strategy.CANARY else 0
    status, now = RolloutStatus(), 0.0
    for advance, kind, converged, ready in ticks:
        now += advance
        metrics = good_metrics(spec)
        if kind == "bad":
            metrics = good_metrics(spec, 50.0)
        elif kind == "empty":
            metrics = tuple(MetricSample(m.metric, m.zone, None) for m in metrics)
        elif kind == "zone-bad":
            metrics = tuple(MetricSample(m.metric, m.zone, 50.0 if m.zone == zones[-1] else 99.9, requests=100)
                            for m in metrics)
        obs = observe(spec, status, applied=status.step if converged else status.step - 1,
                      ready=ready, metrics=metrics)
        d = decide(status, obs, now)
        for a in d.actions:
            if isinstance(a, SetWeights):
                total = sum(w for _, w in a.weights)
                assert total == BASIS_POINTS
                assert all(0 <= w <= BASIS_POINTS for _, w in a.weights)
                assert 0 <= a.canary_weight <= BASIS_POINTS
                if a.stage in ("initial", "analysis"):
                    assert a.canary_weight <= top
                assert a.step == status.step + 1
                canary_total = sum(w for s, w in a.weights if s.version == "v2")
                assert canary_total == a.canary_weight
        if d.status.phase is Phase.FAILED and status.phase is not Phase.FAILED:
            last = [a for a in d.actions if isinstance(a, SetWeights)][-1]
            assert all(w == 0 for s, w in last.weights if s.version == "v2")
            assert d.status.canary_weight == 0
        if d.status.phase in (Phase.PROGRESSING, Phase.WAITING_PROMOTION):
            assert d.status.canary_weight <= top
        assert d.status.failed_checks <= spec.analysis.threshold
        status = d.status


GATED = ["confirm-rollout", "pre-rollout", "rollout", "confirm-traffic-increase", "confirm-promotion", "rollback"]


@st.composite
def situations(draw):
    """A spec with some webhook gates, any stored status (phase, pause, weights, timers, target),
    an operator command or none, each gate's answer and the metrics' verdict."""
    a = draw(analyses())
    gated = draw(st.lists(st.sampled_from(GATED), unique=True, max_size=len(GATED)))
    a["webhooks"] = [{"name": f"{t}-hook", "type": t, "url": f"http://hooks.test/{t}"} for t in gated]
    spec = canary(a, replace_analysis=False, suspend=draw(st.booleans()) and draw(st.booleans()))
    other = canary(a, canary={"version": "v9", "zones": ["eks"]})
    now = 10_000.0
    status = RolloutStatus(
        phase=draw(st.sampled_from(list(Phase))), paused=draw(st.booleans()),
        step=draw(st.integers(0, 9)), canary_weight=draw(st.sampled_from([0, 2000, 6000, BASIS_POINTS])),
        target=draw(st.sampled_from([None, target_of(spec), target_of(other)])),
        failed_checks=draw(st.integers(0, 3)), iterations=draw(st.integers(0, 3)),
        pre_rollout_passed=draw(st.booleans()),
        step_started_at=now - draw(st.sampled_from([0.0, 30.0, 5000.0])),
        converged_at=draw(st.sampled_from([None, now - 100.0])),
        next_analysis_at=draw(st.sampled_from([None, now - 1.0, now + 30.0])),
        held_since=draw(st.sampled_from([None, now - 5000.0])))
    command = draw(st.sampled_from([None, *COMMANDS]))
    answers = {t: draw(st.booleans()) for t in gated}
    metrics = good_metrics(spec, draw(st.sampled_from([99.9, 50.0])))
    return spec, status, now, command, answers, metrics


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(situations())
def test_what_decide_reads_is_what_the_hub_observed(situation):
    """The hub observes only what the tick asks for (``decide_or_ask``); the decision it gets is the
    one the tick makes with everything observed: nothing it read was left unobserved."""
    spec, status, now, command, answers, metrics = situation
    base = replace(observe(spec, status), hooks={}, metrics=(), command=command)
    results = {f"{t}-hook": HookResult(ok, "" if ok else "HTTP 403") for t, ok in answers.items()}
    lazy = replace(base, observed=frozenset())
    asked: list[str] = []
    for _ in range(len(GATED) + 2):
        out = decide_or_ask(status, lazy, now)
        if not isinstance(out, Needs):
            break
        new = [h.value for h in out.hooks] + (["metrics"] if out.metrics else [])
        assert new and not set(new) & set(asked), f"asked again for {new}"
        assert all(h.value in answers for h in out.hooks), "asked for a gate the spec does not have"
        asked += new
        lazy = lazy.adding(out, {n: r for n, r in results.items() if n.rsplit("-hook", 1)[0] in new},
                           metrics if out.metrics else None)
    else:
        raise AssertionError("the tick kept asking")
    everything = replace(base, hooks=results, metrics=metrics)
    assert out == decide(status, everything, now)
