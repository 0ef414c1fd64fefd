"""Canary against primary over the same window: a Mann-Whitney U test plus an effect-size bound.

Kayenta's idea, our code: each side is a sample of per-step figures (success rate or p99 per step).
The one-sided test asks whether the canary is worse; a significant result whose effect (relative
difference of medians) stays within ``max_effect`` is "marginal", beyond it "fail"; otherwise
"pass". Callers: ``metrics.analysis`` for metrics with ``compare: primary``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

ALPHA = 0.05
MAX_EFFECT = 0.10
MIN_SAMPLES = 5


@dataclass(frozen=True)
class Comparison:
    verdict: str  # pass | marginal | fail | nodata
    p_value: float | None
    effect: float | None
    canary_median: float | None
    primary_median: float | None
    reason: str = ""


def compare(canary: Sequence[float], primary: Sequence[float], higher_is_worse: bool,
            alpha: float = ALPHA, max_effect: float = MAX_EFFECT) -> Comparison:
    c = [x for x in canary if not math.isnan(x)]
    p = [x for x in primary if not math.isnan(x)]
    if len(c) < MIN_SAMPLES or len(p) < MIN_SAMPLES:
        return Comparison("nodata", None, None, None, None,
                          f"too few samples (canary {len(c)}, primary {len(p)}, need {MIN_SAMPLES})")
    cm, pm = statistics.median(c), statistics.median(p)
    # One-sided: is the canary's distribution shifted towards worse?
    alternative = "greater" if higher_is_worse else "less"
    from scipy.stats import mannwhitneyu  # heavy import (~0.7 s): only when a comparison runs

    if len(set(c) | set(p)) == 1:
        p_value = 1.0  # identical constant samples: no evidence of a difference
    else:
        p_value = float(mannwhitneyu(c, p, alternative=alternative).pvalue)
    scale = abs(pm) if pm else max(abs(cm), 1e-9)
    effect = (cm - pm) / scale if higher_is_worse else (pm - cm) / scale
    if p_value >= alpha or effect <= 0:
        return Comparison("pass", p_value, effect, cm, pm)
    if effect <= max_effect:
        return Comparison("marginal", p_value, effect, cm, pm, f"worse by {effect:.1%} (p={p_value:.3g})")
    return Comparison("fail", p_value, effect, cm, pm, f"worse by {effect:.1%} (p={p_value:.3g})")
