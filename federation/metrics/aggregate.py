"""Combining zones correctly: ratios from summed counts, quantiles from merged histogram buckets.

``quantile`` follows Prometheus's histogram_quantile (linear interpolation inside the bucket, the
lowest bucket starting at 0, the +Inf bucket answered with the highest finite bound). ``merge``
adds zones' cumulative bucket counts; where zones use different bucket bounds, each zone's count at
a foreign bound is interpolated linearly inside its own bucket, the same assumption
histogram_quantile makes, so the merged histogram matches one scraped into a single server.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

Buckets = Mapping[float, float]  # upper bound (le) -> cumulative count


def ratio_percent(good: Iterable[float], total: Iterable[float]) -> float | None:
    g, t = sum(good), sum(total)
    if t <= 0 or math.isnan(t) or math.isnan(g):
        return None
    return 100.0 * g / t


def _cumulative_at(buckets: Buckets, bound: float) -> float:
    bounds = sorted(buckets)
    prev_le, prev_c = 0.0, 0.0
    for le in bounds:
        c = buckets[le]
        if bound <= le:
            if math.isinf(le):
                return prev_c if not math.isinf(bound) else c
            if le == prev_le:
                return c
            return prev_c + (c - prev_c) * (bound - prev_le) / (le - prev_le)
        prev_le, prev_c = le, c
    return prev_c


def merge(zones: Iterable[Buckets]) -> dict[float, float]:
    zs = [z for z in zones if z]
    bounds = sorted({le for z in zs for le in z})
    return {le: sum(_cumulative_at(z, le) for z in zs) for le in bounds}


def quantile(q: float, buckets: Buckets) -> float | None:
    """histogram_quantile(q, buckets); None when there are no observations."""
    if not buckets:
        return None
    bounds = sorted(buckets)
    if not math.isinf(bounds[-1]):
        return None  # Prometheus needs the +Inf bucket too
    total = buckets[bounds[-1]]
    if total <= 0 or math.isnan(total):
        return None
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for i, le in enumerate(bounds):
        c = buckets[le]
        if c >= rank:
            if math.isinf(le):
                return bounds[i - 1] if i > 0 else None
            if i == 0 and le <= 0:
                return le
            if c == prev_c:
                return le
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
        prev_le, prev_c = le, c
    return bounds[-2] if len(bounds) > 1 else None


def combine(how: str, values: Sequence[float], bounds: tuple[float | None, float | None],
            weights: Sequence[float] | None = None) -> float | None:
    """A custom query's global figure from its zones' values (``MetricCheck.aggregate``).

    ``worst`` is the value furthest past (or nearest to) an edge of ``bounds`` (min, max): the lowest
    for a min, the highest for a max. ``weighted-mean`` weighs each value by ``weights`` (requests);
    None when no zone had any.
    """
    if not values:
        return None
    if how == "sum":
        return float(sum(values))
    if how == "mean":
        return float(sum(values)) / len(values)
    if how == "min":
        return min(values)
    if how == "max":
        return max(values)
    if how == "weighted-mean":
        ws = list(weights or [])
        total = sum(ws)
        if len(ws) != len(values) or total <= 0 or math.isnan(total):
            return None
        return sum(v * w for v, w in zip(values, ws, strict=True)) / total
    lo, hi = bounds

    def badness(v: float) -> float:
        return max(lo - v if lo is not None else -math.inf, v - hi if hi is not None else -math.inf)

    return max(values, key=badness)
