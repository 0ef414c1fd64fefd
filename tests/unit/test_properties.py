"""Property test: any valid spec, any observation sequence — weights stay sane."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from federation.core import plan
from federation.core.decide import decide
from federation.core.spec import BASIS_POINTS, Strategy
from federation.core.state import MetricSample, Phase, RolloutStatus, SetWeights
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
