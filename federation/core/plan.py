"""Step planning: the ladder of canary weights a rollout walks, before and during promotion.

Flagger's rules: ``stepWeight`` adds up to ``maxWeight`` (default 100, the last step capped at it);
``stepWeights`` is an explicit ladder whose last entry is the maximum; ``stepWeightPromotion``
walks the rest of the way to 100% in steps during promotion, otherwise promotion switches at once.
A/B and blue/green keep the canary at 0 (A/B routes matched requests instead) for ``iterations``.
Callers: ``core.decide``, ``fedctl plan``.
"""

from __future__ import annotations

from dataclasses import dataclass

from federation.core.spec import BASIS_POINTS, Analysis, CanarySpec, Fleet, Strategy, percent_to_bp
from federation.core.weights import Subset, subsets_for


def max_weight_bp(analysis: Analysis) -> int:
    if analysis.step_weights:
        return percent_to_bp(analysis.step_weights[-1])
    if analysis.step_weight is not None:
        return percent_to_bp(analysis.max_weight if analysis.max_weight is not None else 100)
    return 0


def mirror_weight_bp(analysis: Analysis) -> int:
    if not analysis.mirror:
        return 0
    return percent_to_bp(analysis.mirror_weight if analysis.mirror_weight is not None else 100)


def analysis_ladder(analysis: Analysis) -> list[int]:
    """Canary weights (bp) of the analysis steps, in order; empty for A/B and blue/green."""
    if analysis.strategy is not Strategy.CANARY:
        return []
    if analysis.step_weights:
        return [percent_to_bp(w) for w in analysis.step_weights]
    assert analysis.step_weight is not None
    step, top = percent_to_bp(analysis.step_weight), max_weight_bp(analysis)
    out, w = [], 0
    while w < top:
        w = min(w + step, top)
        out.append(w)
    return out


def next_analysis_weight(analysis: Analysis, current: int) -> int:
    """The next rung above ``current``; ``current`` itself when at (or past) the top."""
    for w in analysis_ladder(analysis):
        if w > current:
            return w
    return current


def promotion_ladder(analysis: Analysis, start: int) -> list[int]:
    """Canary weights from ``start`` to 100% during promotion."""
    if start >= BASIS_POINTS:
        return []
    if analysis.step_weight_promotion is None:
        return [BASIS_POINTS]
    step = percent_to_bp(analysis.step_weight_promotion)
    out, w = [], start
    while w < BASIS_POINTS:
        w = min(w + step, BASIS_POINTS)
        out.append(w)
    return out


@dataclass(frozen=True)
class PlannedStep:
    index: int
    stage: str  # "initial", "analysis", "promotion"
    checks: int  # passing analyses this step waits for before the next one
    canary_bp: int
    mirror_bp: int
    matched: bool
    weights: dict[Subset, int]


def plan(spec: CanarySpec, fleet: Fleet | None = None) -> list[PlannedStep]:
    """The whole ladder for a rollout that passes every check: what ``fedctl plan`` prints."""
    a = spec.analysis
    steps: list[PlannedStep] = []

    def add(stage: str, canary_bp: int, mirror_bp: int = 0, matched: bool = False, checks: int = 1) -> None:
        steps.append(PlannedStep(len(steps), stage, checks, canary_bp, mirror_bp, matched,
                                 subsets_for(spec, canary_bp, fleet)))

    if spec.skip_analysis:
        add("initial", 0, checks=0)
        add("promotion", BASIS_POINTS, checks=0)
        return steps
    mirror_bp = mirror_weight_bp(a)
    if a.strategy is Strategy.CANARY:
        # Mirroring, where asked, runs before the first weight step.
        add("initial", 0, mirror_bp)
        for w in analysis_ladder(a):
            add("analysis", w)
        top = max_weight_bp(a)
    else:
        add("initial", 0, mirror_bp, matched=a.strategy is Strategy.AB, checks=a.iterations or 1)
        top = 0
    ladder = promotion_ladder(a, top)
    for i, w in enumerate(ladder):
        # Promotion steps wait one interval each when walked in steps; the last one finalises.
        add("promotion", w, checks=0 if i == len(ladder) - 1 else 1)
    return steps
