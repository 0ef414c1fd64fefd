"""Basis-point spreading and step ladders."""

from __future__ import annotations

import pytest

from federation.core import plan
from federation.core.weights import Subset, as_percent, by_zone, spread, subsets_for, within_zone
from tests.unit.builders import canary


@pytest.mark.parametrize(
    ("total", "shares", "expected"),
    [
        (500, [("a", 1), ("b", 1), ("c", 1)], {"a": 167, "b": 167, "c": 166}),
        (10000, [("a", 2), ("b", 1)], {"a": 6667, "b": 3333}),
        (1, [("a", 1), ("b", 1)], {"a": 1, "b": 0}),
        (0, [("a", 1)], {"a": 0}),
        (100, [("a", 0), ("b", 3)], {"a": 0, "b": 100}),
        (7, [("a", 1), ("b", 2), ("c", 4)], {"a": 1, "b": 2, "c": 4}),
    ],
)
def test_spread_is_exact(total, shares, expected):
    got = spread(total, shares)
    assert got == expected and sum(got.values()) == total


def test_subsets_follow_zone_weights():
    spec = canary(zoneWeights={"eks": 3, "onprem": 1})
    w = subsets_for(spec, 2000)
    assert w == {Subset("vms", "v1"): 8000, Subset("eks", "v2"): 1500, Subset("onprem", "v2"): 500}
    assert by_zone(w) == {"vms": 8000, "eks": 1500, "onprem": 500}
    assert within_zone(w, "eks") == {"v2": 1500}


def test_five_percent_over_three_zones_stays_exact():
    spec = canary(canary={"version": "v2", "zones": ["eks", "onprem", "edge"]})
    w = subsets_for(spec, 500)
    assert sum(w.values()) == 10000
    assert sorted(v for s, v in w.items() if s.version == "v2") == [166, 167, 167]


@pytest.mark.parametrize(("bp", "text"), [(2500, "25%"), (333, "3.33%"), (10000, "100%"), (50, "0.5%"), (1, "0.01%")])
def test_as_percent(bp, text):
    assert as_percent(bp) == text


def test_plan_lists_every_step_with_weights_summing_to_100():
    spec = canary({"stepWeights": [1, 10, 50], "stepWeight": None, "maxWeight": None, "stepWeightPromotion": 25})
    steps = plan.plan(spec)
    assert [s.canary_bp for s in steps] == [0, 100, 1000, 5000, 7500, 10000]
    assert [s.stage for s in steps] == ["initial", "analysis", "analysis", "analysis", "promotion", "promotion"]
    assert all(sum(s.weights.values()) == 10000 for s in steps)


def test_plan_ab_shows_matched_initial_step_with_iterations():
    spec = canary({"stepWeight": None, "maxWeight": None, "iterations": 4,
                   "match": [{"headers": {"x-user": {"prefix": "beta-"}}}]})
    steps = plan.plan(spec)
    assert [(s.stage, s.checks, s.matched, s.canary_bp) for s in steps] == [
        ("initial", 4, True, 0), ("promotion", 0, False, 10000)]
