"""What a step is on record: its stage, the rollout's target, and the ``Federation-*`` commit trailers.

``StepRecord.to_trailers``/``from_trailers`` are the one place the trailer vocabulary is spelled;
``RolloutTarget`` is the one place a rollout's identity is written and parsed. Pure: no Git here.
Callers: ``core.decide`` (targets, stages), ``gitops`` (finds and writes step commits),
``hub.worker`` (recovery), ``gitops.history`` and the demo (reading the audit trail).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from federation.core.spec import CanarySpec
from federation.core.state import CheckResult, SetWeights, Stage
from federation.core.weights import Subset, as_percent

TRAILER_PREFIX = "Federation-"

ROLLOUT = f"{TRAILER_PREFIX}Rollout"
TARGET = f"{TRAILER_PREFIX}Target"
STEP = f"{TRAILER_PREFIX}Step"
STAGE = f"{TRAILER_PREFIX}Stage"
CANARY_WEIGHT = f"{TRAILER_PREFIX}Canary-Weight"
WEIGHTS = f"{TRAILER_PREFIX}Weights"
MIRROR_WEIGHT = f"{TRAILER_PREFIX}Mirror-Weight"
MATCHED = f"{TRAILER_PREFIX}Matched"
RETIRE = f"{TRAILER_PREFIX}Retire"
ANALYSIS = f"{TRAILER_PREFIX}Analysis"


@dataclass(frozen=True)
class RolloutTarget:
    """A rollout's identity: a new value starts (or restarts) one. Versions and zones, and the
    checksum of the canary version's definitions in the zone repos when the hub read them (an
    image tag or artifact bump there is a new revision, as a pod-template change is for Flagger).
    Text form: ``v1@vms->v2@eks,onprem#<checksum>``."""

    primary_version: str
    primary_zones: tuple[str, ...]
    canary_version: str
    canary_zones: tuple[str, ...]
    checksum: str = ""

    @staticmethod
    def of(spec: CanarySpec) -> RolloutTarget:
        return RolloutTarget(spec.primary.version, tuple(spec.primary.zones), spec.canary.version,
                             tuple(spec.canary.zones), spec.checksum or "")

    @staticmethod
    def parse(text: str | None) -> RolloutTarget | None:
        """The target in a status or a commit; None for nothing or a malformed text."""
        if not text:
            return None
        versions, _, checksum = text.partition("#")
        primary, sep, canary = versions.partition("->")
        if not sep:
            return None
        pv, _, pz = primary.partition("@")
        cv, _, cz = canary.partition("@")
        if not pv or not cv:
            return None
        return RolloutTarget(pv, tuple(filter(None, pz.split(","))), cv, tuple(filter(None, cz.split(","))), checksum)

    @property
    def versions(self) -> str:
        """The text without the checksum."""
        return f"{self.primary_version}@{','.join(self.primary_zones)}->{self.canary_version}@{','.join(self.canary_zones)}"

    def __str__(self) -> str:
        return f"{self.versions}#{self.checksum}" if self.checksum else self.versions

    def same(self, stored: RolloutTarget | None) -> bool:
        """Whether ``stored`` is this rollout; one stored without a checksum (an older hub, or none
        known) is compared on versions and zones."""
        if stored is None:
            return False
        return self == stored or (not stored.checksum and self.versions == stored.versions)


def weights_text(weights: Iterable[tuple[Subset, int]]) -> str:
    return ",".join(f"{s}={w}" for s, w in weights)


def parse_weights(text: str) -> tuple[tuple[Subset, int], ...]:
    """``eks/v2=2500,vms/v1=7500`` back to sorted (subset, basis points); malformed parts are skipped."""
    out = []
    for part in filter(None, text.split(",")):
        k, _, v = part.partition("=")
        if v.strip().lstrip("-").isdigit():
            out.append((Subset.parse(k), int(v)))
    return tuple(sorted(out))


def checks_text(checks: Iterable[CheckResult]) -> str:
    return "; ".join(f"{c.metric}@{c.zone or 'global'}={'-' if c.value is None else f'{c.value:.4g}'}:{c.outcome}"
                     f"{'(dry-run)' if c.dry_run else ''}" for c in checks)


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.strip().isdigit() else None


@dataclass(frozen=True)
class StepRecord:
    """One step as its commits carry it (every repo the step touches gets the same record)."""

    rollout: str
    step: int
    stage: Stage
    canary_weight: int
    weights: tuple[tuple[Subset, int], ...] = ()
    target: RolloutTarget | None = None
    mirror_weight: int = 0
    matched: bool = False
    retire: tuple[Subset, ...] = ()
    analysis: str = ""  # the checks that justified the step, as text

    @staticmethod
    def of(rollout: str, spec: CanarySpec, action: SetWeights) -> StepRecord:
        return StepRecord(rollout, action.step, Stage(action.stage), action.canary_weight, action.weights,
                          RolloutTarget.of(spec), action.mirror_weight, action.matched, action.retire,
                          checks_text(action.checks))

    def action(self, reason: str = "applied again after a hub restart") -> SetWeights:
        """The step as an action again (to apply it once more after a crash)."""
        return SetWeights(self.step, self.stage, self.canary_weight, self.mirror_weight, self.matched,
                          self.weights, self.retire, reason=reason)

    @property
    def weight_map(self) -> dict[str, int]:
        return {str(s): w for s, w in self.weights}

    def identity(self) -> dict[str, str]:
        """What a commit of the same (rollout, step) must also carry to count as this step: a step
        number reused for other values is refused, never taken as done."""
        t = self.to_trailers()
        return {STAGE: t[STAGE], CANARY_WEIGHT: t[CANARY_WEIGHT]}

    def to_trailers(self) -> dict[str, str]:
        out = {ROLLOUT: self.rollout}
        if self.target is not None:
            out[TARGET] = str(self.target)
        out.update({STEP: str(self.step), STAGE: self.stage.value, CANARY_WEIGHT: str(self.canary_weight),
                    WEIGHTS: weights_text(self.weights)})
        if self.mirror_weight:
            out[MIRROR_WEIGHT] = str(self.mirror_weight)
        if self.matched:
            out[MATCHED] = "true"
        if self.retire:
            out[RETIRE] = ",".join(str(s) for s in self.retire)
        if self.analysis:
            out[ANALYSIS] = self.analysis
        return out

    @staticmethod
    def from_trailers(t: Mapping[str, str]) -> StepRecord | None:
        """The record in a commit's trailers; None when the commit is not a step of ours."""
        rollout, step = t.get(ROLLOUT, ""), _int(t.get(STEP))
        try:
            stage = Stage(t.get(STAGE, ""))
        except ValueError:
            return None
        if not rollout or step is None:
            return None
        return StepRecord(rollout, step, stage, _int(t.get(CANARY_WEIGHT)) or 0, parse_weights(t.get(WEIGHTS, "")),
                          RolloutTarget.parse(t.get(TARGET)), _int(t.get(MIRROR_WEIGHT)) or 0,
                          t.get(MATCHED) == "true", tuple(Subset.parse(x) for x in t.get(RETIRE, "").split(",") if x),
                          t.get(ANALYSIS, ""))

    def message(self, service: str, canary_version: str, body: str = "") -> str:
        """The commit message: a subject a person can read, the reason, then the trailers."""
        title = f"{service}: {self.stage.verb} {canary_version} {as_percent(self.canary_weight)} (step {self.step})"
        trailers = "\n".join(f"{k}: {v}" for k, v in self.to_trailers().items())
        return f"{title}\n\n{body}\n\n{trailers}\n"


def parse_trailers(text: str) -> dict[str, str]:
    """``Key: value`` lines of a commit's trailer block that are ours (``Federation-*``)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep and key.startswith(TRAILER_PREFIX):
            out[key] = value.strip()
    return out
