"""Stateful property test of ``decide()`` against a small model of the fleet and its operator.

Hypothesis' rule-based state machine interleaves, in any order: the clock, zones applying the
committed step (or lagging), instances ready or not, metrics passing, failing, or absent (noData),
webhook gates opening and closing, operator commands (pause, resume, promote, abort, retry), new
revisions of the canary and suspension. Each tick is decided the hub's way (``decide_or_ask``, the
tick asking for what it reads) and checked against the plain ``decide`` and the model:

- the traffic each zone serves (its ZoneRelease serving, as ``gitops.releases.edit_serving``
  writes it) is what the latest step says: no version keeps weight that the step does not name;
- the canary weight never moves backwards except in a rollback or a (re)start;
- a paused or suspended rollout never advances; abort always ends at 0% canary, retired;
- no data never advances the analysis; no step counts before every zone applied it;
- the progress deadline rolls back a step that never converges;
- Succeeded and Failed are stable without a new revision or a retry;
- failed checks count up within a run, never past the threshold.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from federation.core.decide import canary_idle, decide, decide_or_ask, same_target, target_of
from federation.core.spec import BASIS_POINTS, WebhookType
from federation.core.state import (
    COMMANDS,
    HookResult,
    MetricSample,
    Needs,
    Observations,
    Phase,
    Readiness,
    RolloutStatus,
    SetWeights,
    Stage,
)
from tests.unit.builders import canary, good_metrics
from tests.unit.test_properties import analyses

GATES = ("confirm-rollout", "confirm-promotion", "confirm-traffic-increase", "rollback")
MIDFLIGHT = (Phase.PROGRESSING, Phase.WAITING_PROMOTION, Phase.PROMOTING)


class DecideMachine(RuleBasedStateMachine):
    """The world one rollout lives in, and the model's expectations of each tick."""

    def __init__(self) -> None:
        super().__init__()
        self.status = RolloutStatus()
        self.now = 10_000.0
        self.revision = 2
        self.checksum = 0
        self.applied: dict[str, int] = {}
        self.ready = True
        self.metrics_kind = "ok"
        self.open: dict[str, bool] = {}
        self.serving: dict[str, dict[str, int]] = {}  # zone -> version -> weight (the zone repos)
        self.last_step: SetWeights | None = None
        self.paused = False  # the model's own idea of pause, from the commands it gave
        self.ended_for: str | None = None  # the spec's target when the rollout ended (Failed, Succeeded)

    @initialize(analysis=analyses(), gated=st.lists(st.sampled_from(GATES), unique=True),
                skip=st.sampled_from([False, False, False, True]), deadline=st.sampled_from([120, 600]),
                warm=st.sampled_from([True, True, True, False]))
    def setup(self, analysis: dict, gated: list[str], skip: bool, deadline: int, warm: bool) -> None:
        analysis["webhooks"] = [{"name": f"{t}-hook", "type": t, "url": f"http://hooks.test/{t}"} for t in gated]
        self.base = {"analysis": analysis, "skipAnalysis": skip, "progressDeadlineSeconds": deadline}
        self.gated = gated
        self.open = {t: t != "rollback" for t in gated}
        self.suspend = False
        self.spec = self._spec()
        self.zones = list(dict.fromkeys(self.spec.primary.zones + self.spec.canary.zones))
        self.applied = dict.fromkeys(self.zones, 0)
        self.serving = {z: {} for z in self.zones}
        if warm:  # most runs start once the primary serves all traffic
            self.healthy_rounds(3)

    @rule(rounds=st.integers(1, 8))
    def healthy_rounds(self, rounds: int) -> None:
        """The common case, to reach the later phases: every zone applies, an interval passes, a tick."""
        for _ in range(rounds):
            self.every_zone_applies()
            self.clock(60.0)
            self.run(None)

    def _spec(self):
        spec = canary(self.base["analysis"], canary={"version": f"v{self.revision}", "zones": ["eks", "onprem"]},
                      skipAnalysis=self.base["skipAnalysis"], suspend=self.suspend,
                      progressDeadlineSeconds=self.base["progressDeadlineSeconds"])
        return spec.with_checksum(f"c{self.checksum}") if self.checksum else spec

    # -- the world ------------------------------------------------------------------------------

    @rule(seconds=st.sampled_from([1.0, 30.0, 60.0, 61.0, 300.0, 900.0]))
    def clock(self, seconds: float) -> None:
        self.now += seconds

    @rule()
    def every_zone_applies(self) -> None:
        self.applied = dict.fromkeys(self.zones, self.status.step)

    @rule(data=st.data())
    def one_zone_applies(self, data: st.DataObject) -> None:
        self.applied[data.draw(st.sampled_from(self.zones))] = self.status.step

    @rule(ready=st.booleans())
    def readiness(self, ready: bool) -> None:
        self.ready = ready

    @rule(kind=st.sampled_from(["ok", "bad", "nodata", "zone-bad"]))
    def metrics(self, kind: str) -> None:
        self.metrics_kind = kind

    @precondition(lambda self: bool(self.gated))
    @rule(data=st.data(), is_open=st.booleans())
    def gate(self, data: st.DataObject, is_open: bool) -> None:
        self.open[data.draw(st.sampled_from(self.gated))] = is_open

    @precondition(lambda self: self.status.phase not in (Phase.FINALISING, Phase.SUCCEEDED))
    @rule(kind=st.sampled_from(["version", "checksum"]))
    def new_revision(self, kind: str) -> None:
        """A new canary version or revision (after a success the next one would name a new primary:
        out of this model)."""
        if kind == "version":
            self.revision += 1
        else:
            self.checksum += 1
        self.spec = self._spec()

    @rule(suspend=st.booleans())
    def suspension(self, suspend: bool) -> None:
        self.suspend = suspend
        self.spec = self._spec()

    # -- ticks ----------------------------------------------------------------------------------

    def observations(self, command: str | None) -> Observations:
        spec = self.spec
        value = {"ok": 99.9, "bad": 50.0}.get(self.metrics_kind)
        if self.metrics_kind == "nodata":
            metrics = tuple(MetricSample(m.metric, m.zone, None, reason="empty") for m in good_metrics(spec))
        elif self.metrics_kind == "zone-bad":
            metrics = tuple(MetricSample(m.metric, m.zone, 50.0 if m.zone == "onprem" else 99.9, requests=500)
                            for m in good_metrics(spec))
        else:
            metrics = good_metrics(spec, value or 99.9)
        readiness = {z: Readiness(primary=100.0, canary=100.0 if self.ready else 0.0) for z in self.zones}
        hooks = {f"{t}-hook": HookResult(ok, "" if ok else "HTTP 403") for t, ok in self.open.items()}
        return Observations(spec=spec, applied=dict(self.applied), readiness=readiness, metrics=metrics,
                            hooks=hooks, command=command)  # type: ignore[arg-type]

    def the_hubs_way(self, obs: Observations):
        lazy = replace(obs, hooks={}, metrics=(), observed=frozenset())
        for _ in range(len(WebhookType) + 2):
            out = decide_or_ask(self.status, lazy, self.now)
            if not isinstance(out, Needs):
                return out
            hooks = {n: r for n, r in obs.hooks.items() if n.rsplit("-hook", 1)[0] in {h.value for h in out.hooks}}
            lazy = lazy.adding(out, hooks, obs.metrics if out.metrics else None)
        raise AssertionError("the tick kept asking")

    @rule()
    def tick(self) -> None:
        self.run(None)

    @rule(command=st.sampled_from(COMMANDS))
    def operator(self, command: str) -> None:
        self.run(command)

    def run(self, command: str | None) -> None:
        before, spec, obs = self.status, self.spec, self.observations(command)
        d = decide(before, obs, self.now)
        assert self.the_hubs_way(obs) == d, "needs() and decide() disagree"
        assert decide(before, obs, self.now) == d, "decide() is not a function of its inputs"
        after = d.status
        sets = [a for a in d.actions if isinstance(a, SetWeights)]
        assert len(sets) <= 1, f"several steps in one tick: {sets}"
        step = sets[0] if sets else None
        new_target = not same_target(spec, before.target)

        # step accounting: one commit per step, the status carries what was committed
        if step is None:
            assert after.step == before.step and after.canary_weight == before.canary_weight
        else:
            assert step.step == before.step + 1 == after.step
            assert after.canary_weight == step.canary_weight
            assert sum(w for _, w in step.weights) == BASIS_POINTS
            assert after.converged_at is None and after.step_started_at == self.now

        # a suspended or paused rollout never advances
        if spec.suspend:
            assert d.actions == () and after == before.with_(message="suspended")
        elif command in ("pause", "resume"):
            self.paused = command == "pause"
        if before.paused and command != "resume" and not spec.suspend:
            assert step is None, f"a paused rollout moved: {step}"
            assert after.phase is before.phase
        if not spec.suspend:
            assert after.paused == self.paused

        # the weight moves backwards only in a rollback or a (re)start
        if step is not None:
            if step.stage in (Stage.ANALYSIS, Stage.PROMOTION, Stage.FINALISING):
                assert step.canary_weight >= before.canary_weight, f"weight went back: {before} -> {step}"
            elif step.stage is Stage.INITIAL:
                assert new_target or command == "retry" or before.phase in (
                    Phase.INITIALIZED, Phase.WAITING, Phase.FAILED, Phase.SUCCEEDED), f"restart from {before}"
            elif step.stage is Stage.INITIALISE:
                assert before.phase is Phase.INITIALIZING and before.step == 0

        # abort always ends at 0% canary, the canary retired
        paused = before.paused or spec.suspend
        if command == "abort" and not paused and (before.phase.active or before.phase is Phase.INITIALIZING):
            assert after.phase is Phase.FAILED and after.canary_weight == 0
            assert step is not None and step.stage is Stage.ROLLBACK
            assert all(w == 0 for s, w in step.weights if s.version == spec.canary.version)
            assert {s.zone for s in step.retire if s.version == spec.canary.version} == set(spec.canary.zones)
        if after.phase is Phase.FAILED and before.phase is not Phase.FAILED:
            assert after.canary_weight == 0 and step is not None and step.stage is Stage.ROLLBACK

        # no data never advances the analysis (a canary at 0% runs only the pre-rollout gates)
        if (self.metrics_kind == "nodata" and command is None and not new_target and not paused
                and before.phase in (Phase.PROGRESSING, Phase.WAITING_PROMOTION) and not canary_idle(spec, before)):
            assert step is None or step.stage is Stage.ROLLBACK, f"no data advanced: {step}"
            assert after.phase in (before.phase, Phase.FAILED) and after.iterations == before.iterations

        # no step counts before every zone applied it
        if after.converged_at is not None:
            assert all(self.applied[z] >= after.step for z in self.zones), (after, self.applied)
        if step is not None and step.stage is Stage.ANALYSIS:
            assert before.converged_at is not None and all(self.applied[z] >= before.step for z in self.zones)

        # the progress deadline rolls back a step that never converges
        if (command is None and not paused and not new_target and before.phase in (Phase.PROGRESSING,
                                                                               Phase.WAITING_PROMOTION)
                and any(self.applied[z] < before.step for z in self.zones) and before.step_started_at is not None
                and self.now - before.step_started_at > spec.progress_deadline_seconds
                and not (self.open.get("rollback") and before.phase is Phase.PROGRESSING)):
            assert after.phase is Phase.FAILED and "progress deadline" in after.message, after

        # Succeeded and Failed are stable without a new revision or a retry (the model remembers the
        # spec it ended with: a rollout that ends before its target is stored must not start anyway)
        if before.phase in (Phase.SUCCEEDED, Phase.FAILED) and command != "retry" and (
                not new_target or self.ended_for == target_of(spec)):
            assert step is None and after.phase is before.phase, f"{before.phase.value} moved on: {after}"
        if after.phase in (Phase.SUCCEEDED, Phase.FAILED) and after.phase is not before.phase:
            self.ended_for = target_of(spec)

        # the status names the canary the fleet runs
        if after.phase in MIDFLIGHT and same_target(spec, after.target):
            assert after.canary_version == spec.canary.version, after

        # failed checks count within a run, up to the threshold (a retry of an ended rollout is a
        # new run: it may wait at a closed confirm-rollout gate, with no step yet, its count at 0)
        assert after.failed_checks <= spec.analysis.threshold
        retried = command == "retry" and before.phase in (Phase.FAILED, Phase.SUCCEEDED)
        if (step is None or step.stage is not Stage.INITIAL) and after.target == before.target and not retried:
            assert after.failed_checks >= before.failed_checks

        if step is not None:
            self.commit(step)
        if after.phase is not before.phase:
            event(f"{before.phase.value} -> {after.phase.value}")
        self.status = after

    def commit(self, step: SetWeights) -> None:
        """The step lands in the zone repos as ``gitops.releases.edit_serving`` writes it."""
        for z in self.zones:
            serving = self.serving[z]
            serving.update({s.version: w for s, w in step.weights if s.zone == z})
            for s in step.retire:
                if s.zone == z:
                    serving.pop(s.version, None)
        self.last_step = step

    @invariant()
    def zones_serve_what_the_step_says(self) -> None:
        """Every version a zone gives traffic to is one the latest step names there (a version the
        step does not name would take a share of that zone's traffic no analysis looked at)."""
        if self.last_step is None:
            return
        for z in self.zones:
            named = {s.version for s, _ in self.last_step.weights if s.zone == z}
            stray = {v: w for v, w in self.serving[z].items() if w > 0 and v not in named}
            assert not stray, f"zone {z} still serves {stray} after step {self.last_step.step} ({self.last_step.stage})"


DecideMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])
TestDecideMachine = DecideMachine.TestCase
