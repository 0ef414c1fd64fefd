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
