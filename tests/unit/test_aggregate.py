"""Cross-zone aggregation: ratios from summed counts, quantiles from merged buckets."""

from __future__ import annotations

import math
import random

import pytest

from federation.metrics import aggregate

INF = math.inf


def cumulative(samples: list[float], bounds: list[float]) -> dict[float, float]:
    return {b: float(sum(1 for s in samples if s <= b)) for b in [*bounds, INF]}


def test_ratio_is_from_summed_counts_not_averaged_ratios():
    # zone a: 1000 requests at 99%; zone b: 10 requests at 50% -> 98.5%, not the 74.5% average
    assert aggregate.ratio_percent([990, 5], [1000, 10]) == pytest.approx(100 * 995 / 1010)
    assert aggregate.ratio_percent([0], [0]) is None


def test_quantile_matches_histogram_quantile_rules():
    b = {0.1: 10.0, 0.5: 60.0, 1.0: 90.0, INF: 100.0}
    assert aggregate.quantile(0.5, b) == pytest.approx(0.1 + 0.4 * (50 - 10) / 50)
    assert aggregate.quantile(0.05, b) == pytest.approx(0.05)  # first bucket interpolates from 0
    assert aggregate.quantile(0.99, b) == 1.0  # rank in +Inf bucket -> highest finite bound
    assert aggregate.quantile(0.99, {1.0: 0.0, INF: 0.0}) is None
    assert aggregate.quantile(0.5, {1.0: 5.0}) is None  # no +Inf bucket


def test_same_layout_merge_is_exact_sum():
    bounds = [5, 10, 25, 50, 100, 250]
    rng = random.Random(7)
    a = [rng.expovariate(1 / 20) for _ in range(5000)]
    b = [rng.expovariate(1 / 80) for _ in range(500)]
    merged = aggregate.merge([cumulative(a, bounds), cumulative(b, bounds)])
    assert merged == cumulative(a + b, bounds)
    assert aggregate.quantile(0.99, merged) == aggregate.quantile(0.99, cumulative(a + b, bounds))


def test_merged_p99_is_not_an_average_of_zone_p99s():
    bounds = [5, 10, 25, 50, 100, 250, 500]
    fast = cumulative([3.0] * 10_000, bounds)
    slow = cumulative([400.0] * 200, bounds)
    merged = aggregate.quantile(0.99, aggregate.merge([fast, slow]))
    avg = (aggregate.quantile(0.99, fast) + aggregate.quantile(0.99, slow)) / 2
    assert merged is not None and merged > 250  # 200 of 10,200 requests are slow: p99 is slow
    assert abs(merged - avg) > 10


def test_different_bucket_layouts_merge_within_one_bucket_of_truth():
    rng = random.Random(3)
    a = [rng.uniform(0, 300) for _ in range(4000)]
    b = [rng.uniform(0, 300) for _ in range(4000)]
    la, lb = [10, 50, 100, 200, 400], [25, 75, 150, 300]
    merged = aggregate.merge([cumulative(a, la), cumulative(b, lb)])
    assert sorted(merged) == sorted({*la, *lb, INF})
    fine = sorted({*la, *lb})
    truth = aggregate.quantile(0.9, cumulative(a + b, fine))
    got = aggregate.quantile(0.9, merged)
    assert truth is not None and got is not None
    width = min(hi - lo for lo, hi in zip([0, *fine], fine, strict=False) if lo <= truth <= hi)
    assert abs(got - truth) <= width


@pytest.mark.parametrize("how, bounds, weights, expected", [
    ("worst", (99.0, None), None, 90.0),      # a min: the lowest zone
    ("worst", (None, 500.0), None, 120.0),    # a max: the highest zone
    ("worst", (95.0, 100.0), None, 120.0),    # both: the one furthest past an edge
    ("worst", (85.0, 130.0), None, 90.0),     # both, all inside: the one nearest an edge
    ("sum", (None, 5.0), None, 310.0),
    ("mean", (None, 5.0), None, 310.0 / 3),
    ("min", (None, 5.0), None, 90.0),
    ("max", (None, 5.0), None, 120.0),
    ("weighted-mean", (None, 5.0), [1.0, 0.0, 3.0], (100.0 + 3 * 90.0) / 4),
    ("weighted-mean", (None, 5.0), [0.0, 0.0, 0.0], None),  # no requests anywhere: no data
])
def test_custom_values_combine_as_the_metric_says(how, bounds, weights, expected):
    got = aggregate.combine(how, [100.0, 120.0, 90.0], bounds, weights)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_no_values_is_no_data():
    assert aggregate.combine("sum", [], (None, 1.0)) is None


def test_the_analyzer_combines_zones_of_a_custom_query_by_its_aggregate():
    import asyncio

    from federation.core import analysis as core_analysis
    from federation.core import spec as specs
    from federation.metrics.analysis import Analyzer
    from tests import fleets, provider_stubs

    # errors per zone: eks 3, onprem 4 (of 100 and 300 requests)
    def zone(errors: str, requests: str) -> provider_stubs.Stub:
        return provider_stubs.prometheus(lambda q: requests if "envoy_cluster_upstream_rq" in q else errors)

    eks, onprem = zone("3", "100"), zone("4", "300")
    try:
        fleet = fleets.fleet([fleets.vm_zone("eks", prometheus=eks.url), fleets.vm_zone("onprem", prometheus=onprem.url),
                              fleets.vm_zone("vms")])
        figures = {}
        for how in ("worst", "sum", "mean", "weighted-mean"):
            spec = specs.CanarySpec.model_validate({
                "service": {"name": "frontend"}, "primary": {"version": "v1", "zones": ["vms"]},
                "canary": {"version": "v2", "zones": ["eks", "onprem"]},
                "analysis": {"stepWeight": 10, "metrics": [{"name": "errors", "query": "sum(errors_total)",
                                                            "thresholdRange": {"max": 6}, "aggregate": how}]}})
            samples = asyncio.run(Analyzer(fleet).collect(spec, "shop", at=1000.0))
            by = {s.zone: s.value for s in samples}
            assert by["eks"] == 3.0 and by["onprem"] == 4.0
            figures[how] = by[None]
            if how == "sum":  # 7 errors fleet-wide fail the fleet-wide max though each zone passes
                checks = core_analysis.judge(spec, samples).checks
                assert [(c.zone, c.outcome) for c in checks] == [(None, "fail"), ("eks", "pass"), ("onprem", "pass")]
        assert figures == {"worst": 4.0, "sum": 7.0, "mean": 3.5, "weighted-mean": pytest.approx((300 + 1200) / 400)}
    finally:
        eks.close()
        onprem.close()


def test_slo_burn_rate_is_multi_window_global_and_per_zone():
    import asyncio

    from federation.core import analysis as core_analysis
    from federation.core import spec as specs
    from federation.metrics.analysis import Analyzer
    from tests import fleets, provider_stubs

    def zone(counts: dict[str, tuple[str, str]]) -> provider_stubs.Stub:
        """(good, total) requests per window, told apart by the query's range."""
        def answer(q: str) -> str:
            good, total = next(v for w, v in counts.items() if f"[{w}]" in q)
            return good if "envoy_response_code!~" in q else total
        return provider_stubs.prometheus(answer)

    # eks: a 5m blip (burn 20) but the hour is fine (8.3): pass. onprem: both burn (30, 20): fail.
    eks = zone({"5m": ("980", "1000"), "1h": ("11900", "12000")})
    onprem = zone({"5m": ("970", "1000"), "1h": ("9800", "10000")})
    try:
        fleet = fleets.fleet([fleets.vm_zone("eks", prometheus=eks.url), fleets.vm_zone("onprem", prometheus=onprem.url),
                              fleets.vm_zone("vms")])
        spec = specs.CanarySpec.model_validate({
            "service": {"name": "frontend"}, "primary": {"version": "v1", "zones": ["vms"]},
            "canary": {"version": "v2", "zones": ["eks", "onprem"]},
            "analysis": {"stepWeight": 10, "metrics": [{"name": "error-budget",
                                                        "slo": {"objective": 99.9, "windows": ["5m", "1h"]}}]}})
        samples = asyncio.run(Analyzer(fleet).collect(spec, "shop", at=1000.0))
        by = {s.zone: s for s in samples}
        assert by["eks"].value == pytest.approx((100 / 12000) / 0.001)
        assert by["onprem"].value == pytest.approx(20.0)
        # global from summed counts: 5m 2.5% (25), 1h 300/22000 (13.6): the hour holds it under 14.4
        assert by[None].value == pytest.approx((300 / 22000) / 0.001) and by[None].requests == 2000
        checks = {c.zone: c for c in core_analysis.judge(spec, samples).checks}
        assert {z: c.outcome for z, c in checks.items()} == {None: "pass", "eks": "pass", "onprem": "fail"}
        assert checks["onprem"].message == "20 > max 14.4"
    finally:
        eks.close()
        onprem.close()


def test_slo_without_requests_in_a_window_is_no_data():
    import asyncio

    from federation.core import spec as specs
    from federation.metrics.analysis import Analyzer
    from tests import fleets, provider_stubs

    idle = provider_stubs.prometheus(lambda q: "0" if "[5m]" in q else "100")
    try:
        fleet = fleets.fleet([fleets.vm_zone("eks", prometheus=idle.url), fleets.vm_zone("vms")])
        spec = specs.CanarySpec.model_validate({
            "service": {"name": "frontend"}, "primary": {"version": "v1", "zones": ["vms"]},
            "canary": {"version": "v2", "zones": ["eks"]},
            "analysis": {"stepWeight": 10, "metrics": [{"name": "budget", "slo": {"objective": 99.5}}]}})
        by = {s.zone: s for s in asyncio.run(Analyzer(fleet).collect(spec, "shop", at=1000.0))}
        assert by["eks"].value is None and by["eks"].reason == "no requests in 5m"
        assert by[None].value is None and by[None].reason == "eks: no requests in 5m"
    finally:
        idle.close()
