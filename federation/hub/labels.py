"""How a rollout's state reads as series values and labels: our status code, Flagger's (its
``SetStatus`` mapping, not its docs'), the canary's share as Flagger reports it, and Flagger's
``deployment_strategy`` label. Callers: ``hub.metrics``.
"""

from __future__ import annotations

from federation.core.spec import CanarySpec
from federation.core.state import Phase, RolloutStatus


def status_code(status: RolloutStatus) -> int:
    """Ours: 0 while in motion, 1 promoted, 2 rolled back."""
    return {Phase.SUCCEEDED: 1, Phase.FAILED: 2}.get(status.phase, 0)


def flagger_status_code(status: RolloutStatus) -> int:
    """Flagger's ``SetStatus``: 0 while Progressing, 2 once Failed, 1 for every other phase."""
    return {Phase.PROGRESSING: 0, Phase.FAILED: 2}.get(status.phase, 1)


def flagger_canary_percent(status: RolloutStatus) -> float:
    """The canary's share as Flagger reports it: once promoted, the new version is the primary (100/0)."""
    return 0.0 if status.phase is Phase.SUCCEEDED else status.canary_weight / 100


def strategy(spec: CanarySpec) -> str:
    """Flagger's ``deployment_strategy`` label: ab-testing (match), blue-green (iterations, no weights), canary."""
    a = spec.analysis
    if a.match:
        return "ab-testing"
    if a.iterations and not a.step_weight and not a.step_weights:
        return "blue-green"
    return "canary"
