"""The demo's step timing figures (``demo.steptimes``, ``demo.run.figures``): per step commit to a
Kubernetes zone, seconds from the commit to Flux-applied, Deployments ready and route live."""

from __future__ import annotations

from collections import Counter

from federation.demo import run as demo_run
from federation.demo import steptimes


def test_figures_per_rollout_and_per_step():
    t1 = steptimes.StepTiming("eks", "shop/frontend", 1, "a" * 40, 10.0, applied=10.5, ready=12.0, live=12.25)
    t2 = steptimes.StepTiming("onprem", "shop/frontend", 1, "b" * 40, 10.0, applied=11.0, ready=11.0, live=11.5)
    t3 = steptimes.StepTiming("eks", "shop/frontend", 2, "c" * 40, 20.0)  # never applied
    assert demo_run.step_lines([t1, t3]) == [
        "eks step 1 commit aaaaaaaa: Flux applied +0.50s, Deployments ready +2.00s, route live +2.25s",
        "eks step 2 commit cccccccc: Flux applied -, Deployments ready -, route live -"]
    s = steptimes.summary([t1, t2, t3])
    assert s["steps"] == 3 and s["applied"] == (0.75, 1.0, 2) and s["live"] == (1.875, 2.25, 2)
    load = demo_run.LoadStats(100, Counter({"200": 98, "500": 2}))
    o = demo_run.RolloutOutcome("rollout 1: v1 -> v2", "Succeeded", 40.0, 4, 8, load, Counter(), "", [t1, t2, t3])
    assert demo_run.figures([o]) == [
        "rollout 1: Succeeded, 100 requests, 2 non-2xx, 0 errors, 4 steps in 40.0s (10.0s per step)",
        "Kubernetes zones, 3 step commits: commit -> Flux-applied median 0.75s, max 1.00s (2/3); -> Deployments "
        "ready median 1.50s, max 2.00s (2/3); -> route live median 1.88s, max 2.25s (2/3)"]
