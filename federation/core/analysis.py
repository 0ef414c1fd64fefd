"""Analysis verdicts: the metric samples of one tick judged against the spec, globally and per zone.

A zone-local failure fails the check even when the global figure passes; no data is never a pass
(``noData: fail`` counts a failed check, ``noData: hold`` holds the step). Callers: ``core.decide``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from federation.core.spec import CanarySpec, MetricCheck, NoData, Scope
from federation.core.state import CheckResult, MetricSample, Outcome


@dataclass(frozen=True)
class Verdict:
    checks: tuple[CheckResult, ...]

    @property
    def decisive(self) -> tuple[CheckResult, ...]:
        """The checks that count: dry-run metrics are recorded, never decisive."""
        return tuple(c for c in self.checks if not c.dry_run)

    @property
    def failed(self) -> bool:
        return any(c.outcome in ("fail", "nodata") for c in self.decisive)

    @property
    def held(self) -> bool:
        return not self.failed and any(c.outcome == "hold" for c in self.decisive)

    @property
    def passed(self) -> bool:
        return not self.failed and not self.held

    def summary(self) -> str:
        bad = [c for c in self.decisive if c.outcome != "pass"]
        dry = [c for c in self.checks if c.dry_run and c.outcome != "pass"]
        text = "; ".join(_describe(c) for c in bad) if bad else f"{len(self.decisive)} checks passed"
        return text + "".join(f"; {_describe(c)}" for c in dry)


def _describe(c: CheckResult) -> str:
    where = c.zone or "global"
    return f"{c.metric}@{where} {c.outcome}{' (dry-run)' if c.dry_run else ''}: {c.message}"


def _judge_one(m: MetricCheck, zone: str | None, sample: MetricSample | None) -> CheckResult:
    def missing(reason: str) -> CheckResult:
        outcome: Outcome = "hold" if m.no_data is NoData.HOLD else "nodata"
        return CheckResult(m.name, zone, None, outcome, reason)

    if sample is None:
        return missing("not observed")
    if sample.missing:
        return missing(sample.reason or "no data")
    value = sample.value
    assert value is not None
    if not math.isfinite(value):  # NaN compares false with everything: it would pass any bound
        return missing(f"non-finite value {value}")
    if zone is not None and m.min_requests and sample.requests is not None and sample.requests < m.min_requests:
        return missing(f"{sample.requests:g} requests, fewer than minRequests {m.min_requests}")
    if m.compare == "primary":
        verdict = sample.comparison
        if verdict == "fail":
            return CheckResult(m.name, zone, value, "fail", "canary worse than primary")
        if verdict == "marginal":
            return CheckResult(m.name, zone, value, "hold", "canary vs primary is marginal")
        if verdict != "pass":
            return missing("no canary-vs-primary comparison")
    lo, hi = m.bounds
    if lo is not None and value < lo:
        return CheckResult(m.name, zone, value, "fail", f"{value:.4g} < min {lo:g}")
    if hi is not None and value > hi:
        return CheckResult(m.name, zone, value, "fail", f"{value:.4g} > max {hi:g}")
    return CheckResult(m.name, zone, value, "pass", f"{value:.4g}")


def judge(spec: CanarySpec, samples: Sequence[MetricSample]) -> Verdict:
    """Every metric of the spec in every scope it asks for: global, and each canary zone."""
    index = {(s.metric, s.zone): s for s in samples}
    out: list[CheckResult] = []
    for m in spec.analysis.metrics:
        judged: list[CheckResult] = []
        if m.scope in (Scope.GLOBAL, Scope.BOTH):
            judged.append(_judge_one(m, None, index.get((m.name, None))))
        if m.scope in (Scope.ZONE, Scope.BOTH):
            for zone in spec.canary.zones:
                judged.append(_judge_one(m, zone, index.get((m.name, zone))))
        out.extend(dataclasses.replace(c, dry_run=True) if m.dry_run else c for c in judged)
    return Verdict(tuple(out))
