"""Rollout state: phases, the persisted status, what the hub observed, and the actions it must take.

All frozen; ``RolloutStatus.for_storage``/``from_storage`` give the JSON-able form the state stores
keep. Callers: ``core.decide`` (reads and returns these), ``hub`` (persists, executes actions).
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from federation.core.spec import CanarySpec, Fleet, WebhookType
from federation.core.weights import Subset


class Phase(str, enum.Enum):
    INITIALIZING = "Initializing"
    """Routes are being set to send everything to the primary; waiting for zones to apply them."""
    INITIALIZED = "Initialized"
    """The primary serves all traffic; no canary version is waiting."""
    WAITING = "Waiting"
    """A new canary version is known but a confirm-rollout gate has not approved it yet."""
    PROGRESSING = "Progressing"
    """The canary is being analysed and its weight stepped up."""
    WAITING_PROMOTION = "WaitingPromotion"
    """Analysis is done; a confirm-promotion gate holds promotion while checks keep running."""
    PROMOTING = "Promoting"
    """Traffic moves to the canary up to 100% (in steps with stepWeightPromotion)."""
    FINALISING = "Finalising"
    """The canary has all traffic; the old primary instances are retired."""
    SUCCEEDED = "Succeeded"
    """The canary version is the new primary."""
    FAILED = "Failed"
    """The canary was rolled back: every canary subset is at weight 0."""

    @property
    def active(self) -> bool:
        return self in (Phase.WAITING, Phase.PROGRESSING, Phase.WAITING_PROMOTION, Phase.PROMOTING, Phase.FINALISING)


Outcome = Literal["pass", "fail", "nodata", "hold"]


@dataclass(frozen=True)
class CheckResult:
    """One metric judged in one scope: ``zone`` None is the global figure."""

    metric: str
    zone: str | None
    value: float | None
    outcome: Outcome
    message: str = ""
    dry_run: bool = False  # the metric's dryRun: recorded, never decisive

    def for_storage(self) -> dict[str, Any]:
        out = {"metric": self.metric, "zone": self.zone, "value": self.value, "outcome": self.outcome,
               "message": self.message}
        if self.dry_run:
            out["dryRun"] = True
        return out

    @staticmethod
    def from_storage(d: Mapping[str, Any]) -> CheckResult:
        return CheckResult(d["metric"], d.get("zone"), d.get("value"), d["outcome"], d.get("message", ""),
                           bool(d.get("dryRun", False)))


@dataclass(frozen=True)
class RolloutStatus:
    """What the hub keeps for one rollout between ticks. ``step`` counts weight commits."""

    phase: Phase = Phase.INITIALIZING
    primary_version: str | None = None
    canary_version: str | None = None
    target: str | None = None
    canary_weight: int = 0
    mirror_weight: int = 0
    matched: bool = False
    step: int = 0
    failed_checks: int = 0
    iterations: int = 0
    pre_rollout_passed: bool = False
    step_started_at: float | None = None
    converged_at: float | None = None
    next_analysis_at: float | None = None
    held_since: float | None = None
    started_at: float | None = None
    last_transition_at: float | None = None
    message: str = ""
    last_checks: tuple[CheckResult, ...] = ()
    paused: bool = False

    def with_(self, **changes: Any) -> RolloutStatus:
        return dataclasses.replace(self, **changes)

    def for_storage(self) -> dict[str, Any]:
        # Flat fields copied directly (dataclasses.asdict deep-copies recursively: the hub's hottest path).
        d = {f.name: getattr(self, f.name) for f in _STATUS_FIELDS}
        d["phase"] = self.phase.value
        d["last_checks"] = [c.for_storage() for c in self.last_checks]
        return d

    @staticmethod
    def from_storage(d: Mapping[str, Any]) -> RolloutStatus:
        known = {f.name for f in dataclasses.fields(RolloutStatus)}
        values = {k: v for k, v in d.items() if k in known}
        values["phase"] = Phase(values.get("phase", Phase.INITIALIZING.value))
        values["last_checks"] = tuple(CheckResult.from_storage(c) for c in values.get("last_checks", ()))
        return RolloutStatus(**values)


_STATUS_FIELDS = dataclasses.fields(RolloutStatus)


@dataclass(frozen=True)
class Readiness:
    """Percent of instances available per side in one zone (None: that side does not run there)."""

    primary: float | None = None
    canary: float | None = None
    canary_failed: str = ""  # the workload itself says it cannot progress (a Deployment's ProgressDeadlineExceeded)


@dataclass(frozen=True)
class MetricSample:
    """One figure the metrics adapter read: ``zone`` None is the global aggregate.

    ``value`` None or NaN means no data (empty result, unreachable, timeout); ``reason`` says why.
    ``requests`` is the request count in the window (for the per-zone minimum). ``comparison`` is a
    canary-vs-primary verdict ("pass", "marginal", "fail") for ``compare: primary`` metrics.
    """

    metric: str
    zone: str | None
    value: float | None
    reason: str = ""
    requests: float | None = None
    comparison: str | None = None
    broken: bool = False  # no data because the backend itself failed (refused, timed out, an error)

    @property
    def missing(self) -> bool:
        return self.value is None or math.isnan(self.value)


@dataclass(frozen=True)
class HookResult:
    ok: bool
    message: str = ""


@dataclass(frozen=True)
class Observations:
    """Everything one tick saw. ``applied`` maps each target (zone, or "mesh") to the last step it applied."""

    spec: CanarySpec
    fleet: Fleet | None = None
    applied: Mapping[str, int | None] = field(default_factory=dict)
    readiness: Mapping[str, Readiness] = field(default_factory=dict)
    metrics: tuple[MetricSample, ...] = ()
    hooks: Mapping[str, HookResult] = field(default_factory=dict)
    command: Command | None = None  # an operator's request, consumed by this tick
    # What of ``metrics`` and ``hooks`` (by webhook type, and METRICS) the hub observed; None: all
    # a tick may read is here (tests, replays). ``decide_or_ask`` asks for anything else it reaches.
    observed: frozenset[str] | None = None

    def has(self, what: str) -> bool:
        return self.observed is None or what in self.observed

    def adding(self, what: Needs, hooks: Mapping[str, HookResult],
               metrics: tuple[MetricSample, ...] | None) -> Observations:
        """These observations with what was asked for observed too."""
        seen = {*(self.observed or ()), *(h.value for h in what.hooks), *((METRICS,) if what.metrics else ())}
        return dataclasses.replace(self, hooks={**self.hooks, **hooks},
                                   metrics=self.metrics if metrics is None else metrics, observed=frozenset(seen))


METRICS = "metrics"  # in Observations.observed: the canary zones' metrics were read


Command = Literal["pause", "resume", "promote", "abort", "retry"]
COMMANDS: tuple[str, ...] = ("pause", "resume", "promote", "abort", "retry")


# ----------------------------------------------------------------------------- actions


class Stage(enum.StrEnum):
    INITIALISE = "initialise"
    """All traffic to the primary before any canary exists."""
    INITIAL = "initial"
    """A new canary starts: weight 0 (or the mirror / matched share)."""
    ANALYSIS = "analysis"
    """A passing analysis stepped the canary weight up."""
    PROMOTION = "promotion"
    """Traffic moves to the canary after the analysis (or an operator's promote)."""
    FINALISING = "finalising"
    """The canary has all traffic; the old primary is retired."""
    ROLLBACK = "rollback"
    """The canary is sent back to weight 0 and retired."""

    @property
    def verb(self) -> str:
        """The word in a step commit's subject."""
        return _VERBS[self]

    def phase_after(self, stored: Phase) -> Phase:
        """The phase a rollout is in once a step of this stage is committed (crash recovery)."""
        if self in (Stage.INITIAL, Stage.ANALYSIS):
            return Phase.WAITING_PROMOTION if stored is Phase.WAITING_PROMOTION else Phase.PROGRESSING
        return _PHASES[self]


_VERBS = {Stage.INITIALISE: "initialise", Stage.INITIAL: "start", Stage.ANALYSIS: "canary",
          Stage.PROMOTION: "promote", Stage.FINALISING: "finalise", Stage.ROLLBACK: "rollback"}
_PHASES = {Stage.INITIALISE: Phase.INITIALIZING, Stage.PROMOTION: Phase.PROMOTING,
           Stage.FINALISING: Phase.FINALISING, Stage.ROLLBACK: Phase.FAILED}



@dataclass(frozen=True)
class SetWeights:
    """Commit these weights (routes and zone manifests) as step ``step`` and make every zone apply them.

    ``retire`` names subsets whose instances should stop (the canary after a rollback, the old
    primary after promotion). ``checks`` is the analysis that justified the step (for the commit).
    """

    step: int
    stage: Stage
    canary_weight: int
    mirror_weight: int
    matched: bool
    weights: tuple[tuple[Subset, int], ...]
    retire: tuple[Subset, ...] = ()
    reason: str = ""
    checks: tuple[CheckResult, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "stage", Stage(self.stage))  # a stage given as its text is still a Stage


@dataclass(frozen=True)
class CallHooks:
    """Call every webhook of ``type`` (post-rollout); failures are logged, never decisive."""

    type: WebhookType


@dataclass(frozen=True)
class Emit:
    """An event: Kubernetes Event, notification (by severity), and every ``event`` webhook.
    ``alert`` false: no notification (a failing webhook with ``muteAlert``); the rest still go."""

    severity: Literal["info", "warn", "error"]
    reason: str
    message: str
    alert: bool = True


Action = SetWeights | CallHooks | Emit


@dataclass(frozen=True)
class Decision:
    status: RolloutStatus
    actions: tuple[Action, ...] = ()


@dataclass(frozen=True)
class Needs:
    """What a tick asked to be observed before it can decide (``core.decide.decide_or_ask``)."""

    metrics: bool = False
    hooks: tuple[WebhookType, ...] = ()
