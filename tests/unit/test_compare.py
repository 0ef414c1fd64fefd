"""Canary-vs-primary judgement: Mann-Whitney U with an effect-size bound."""

from __future__ import annotations

import random

from federation.metrics.compare import compare


def noisy(center: float, n: int = 30, spread: float = 2.0, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [center + rng.gauss(0, spread) for _ in range(n)]


def test_same_distribution_passes():
    assert compare(noisy(50, seed=1), noisy(50, seed=2), higher_is_worse=True).verdict == "pass"


def test_clearly_slower_canary_fails():
    r = compare(noisy(80, seed=1), noisy(50, seed=2), higher_is_worse=True)
    assert r.verdict == "fail" and r.effect is not None and r.effect > 0.5 and r.p_value < 0.001


def test_slightly_slower_canary_is_marginal():
    r = compare(noisy(52.5, spread=0.5, seed=1), noisy(50, spread=0.5, seed=2), higher_is_worse=True)
    assert r.verdict == "marginal", r


def test_better_canary_passes_even_when_significant():
    assert compare(noisy(30, seed=1), noisy(50, seed=2), higher_is_worse=True).verdict == "pass"


def test_lower_success_rate_fails():
    r = compare(noisy(70, seed=1), noisy(99.5, spread=0.2, seed=2), higher_is_worse=False)
    assert r.verdict == "fail"


def test_too_few_samples_is_no_data():
    assert compare([1, 2], noisy(50), higher_is_worse=True).verdict == "nodata"
