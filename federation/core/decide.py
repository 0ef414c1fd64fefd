"""``decide(status, observations, now) -> Decision``: one tick of one rollout, pure.

No I/O, no clock, no asyncio: the hub observes, calls this, and executes the returned actions.
Flagger's semantics live here, stretched over zones: a step counts only once every zone has applied
it; analysis runs one interval after that; failed checks are counted within a run and roll back at
``threshold``; the progress deadline rolls back a step that never converges or a canary never ready.
What a tick reads beyond Git, convergence and readiness (webhook gates, metrics) it asks for:
``decide_or_ask`` returns ``Needs`` when the tick reaches something the hub has not observed yet
(``Observations.observed``), and the hub observes it and asks again — as httpx's auth flows yield
requests. One source of truth: no separate prediction of what a tick will read can drift from it.
Callers: ``hub.worker`` (every tick, through ``decide_or_ask``), tests (table-driven ``decide``).
"""

from __future__ import annotations

from collections.abc import Mapping

from federation.core import analysis as analysis_mod
from federation.core import plan, steps
from federation.core.spec import BASIS_POINTS, CanarySpec, Placement, Strategy, WebhookType
from federation.core.state import (
    METRICS,
    Action,
    CallHooks,
    CheckResult,
    Decision,
    Emit,
    HookResult,
    MetricSample,
    Needs,
    Observations,
    Phase,
    RolloutStatus,
    SetWeights,
    Stage,
)
from federation.core.weights import Subset, as_percent, subsets_for


def target_of(spec: CanarySpec) -> str:
    """Identity of a rollout as stored (see ``core.steps.RolloutTarget``)."""
    return str(steps.RolloutTarget.of(spec))


def same_target(spec: CanarySpec, stored: str | None) -> bool:
    """Whether ``stored`` (a status's or a commit's target) is this spec's rollout."""
    return steps.RolloutTarget.of(spec).same(steps.RolloutTarget.parse(stored))


def spec_for_target(spec: CanarySpec, stored: str | None) -> CanarySpec | None:
    """``spec`` with the versions, zones and checksum of a stored target: the rollout a status still
    describes after a newer release arrived (None for no or a malformed target)."""
    t = steps.RolloutTarget.parse(stored)
    if t is None or not t.primary_zones or not t.canary_zones:
        return None
    update: dict[str, object] = {"primary": Placement(version=t.primary_version, zones=list(t.primary_zones)),
                                 "canary": Placement(version=t.canary_version, zones=list(t.canary_zones))}
    if set(t.canary_zones) != set(spec.canary.zones):
        update["zone_weights"] = None
    return spec.model_copy(update=update).with_checksum(t.checksum)


def analysis_due(status: RolloutStatus, now: float) -> bool:
    return (
        status.phase in (Phase.PROGRESSING, Phase.WAITING_PROMOTION, Phase.PROMOTING)
        and status.converged_at is not None
        and status.next_analysis_at is not None
        and now >= status.next_analysis_at
    )


def canary_idle(spec: CanarySpec, status: RolloutStatus) -> bool:
    """No live traffic reaches the canary (weight 0, no mirror) in a weighted rollout.

    As in Flagger, such an iteration runs only the pre-rollout hooks: metrics would be empty and
    load-test hooks have nothing to measure yet, so the first weight step follows them.
    """
    return (spec.analysis.strategy is Strategy.CANARY and status.canary_weight == 0
            and status.mirror_weight == 0)


class _Missing(Exception):
    """The tick reached something not observed (internal: ``decide_or_ask`` returns its needs)."""

    def __init__(self, needs: Needs) -> None:
        super().__init__(needs)
        self.needs = needs


class _Tick:
    """Working state of one decision; collects actions and builds the next status."""

    def __init__(self, status: RolloutStatus, obs: Observations, now: float) -> None:
        self.status = status
        self.obs = obs
        self.spec = obs.spec
        self.now = now
        self.actions: list[Action] = []

    # -- helpers -----------------------------------------------------------------------------

    def done(self, **changes: object) -> Decision:
        if "phase" in changes and changes["phase"] != self.status.phase:
            changes.setdefault("last_transition_at", self.now)
        return Decision(self.status.with_(**changes), tuple(self.actions))

    def emit(self, severity: str, reason: str, message: str, alert: bool = True) -> None:
        self.actions.append(Emit(severity, reason, message, alert))  # type: ignore[arg-type]

    def hook_results(self, kind: WebhookType) -> Mapping[str, HookResult]:
        if not self.obs.has(kind.value):
            raise _Missing(Needs(hooks=(kind,)))
        return self.obs.hooks

    def metrics(self) -> tuple[MetricSample, ...]:
        if not self.obs.has(METRICS):
            raise _Missing(Needs(metrics=True))
        return self.obs.metrics

    def gate(self, kind: WebhookType) -> tuple[bool, str, bool]:
        """All hooks of ``kind`` answered 2xx this tick (a hook not called counts as a no); the
        reason, and whether the hook that said no mutes its alerts (``muteAlert``)."""
        hooks = self.spec.analysis.hooks(kind)
        results = self.hook_results(kind) if hooks else {}
        for h in hooks:
            r = results.get(h.name)
            if r is None or not r.ok:
                return False, f"{kind.value} hook {h.name!r} " + (r.message if r else "not answered"), h.mute_alert
        return True, "", False

    def any_hook_ok(self, kind: WebhookType) -> str | None:
        hooks = self.spec.analysis.hooks(kind)
        results = self.hook_results(kind) if hooks else {}
        for h in hooks:
            r = results.get(h.name)
            if r is not None and r.ok:
                return h.name
        return None

    def zones(self) -> list[str]:
        return list(dict.fromkeys(self.spec.primary.zones + self.spec.canary.zones))

    def lagging(self) -> list[str]:
        """Targets that have not applied the current step (unreachable ones included)."""
        targets = list(dict.fromkeys([*self.zones(), *self.obs.applied.keys()]))
        out = []
        for t in targets:
            got = self.obs.applied.get(t)
            if got is None or got < self.status.step:
                out.append(t)
        return out

    def unready(self) -> list[str]:
        a = self.spec.analysis
        out = []
        # Once finalising, the old primary is being retired: its readiness no longer matters.
        primary_zones = self.spec.primary.zones if self.status.phase is not Phase.FINALISING else []
        for z in primary_zones:
            r = self.obs.readiness.get(z)
            if r is None or r.primary is None or r.primary < a.primary_ready_threshold:
                out.append(f"{z}/{self.spec.primary.version}")
        if self.status.phase is not Phase.INITIALIZING:
            for z in self.spec.canary.zones:
                r = self.obs.readiness.get(z)
                if r is None or r.canary is None or r.canary < a.canary_ready_threshold:
                    out.append(f"{z}/{self.spec.canary.version}")
        return out

    def deployed_canary(self) -> str | None:
        """The canary version the fleet runs for the stored rollout: the one being analysed or
        promoted, or, Waiting after a new revision arrived mid-rollout, the one still deployed
        (kept as the status's ``canary_version`` while the new target waits)."""
        s = self.status
        if s.phase in (Phase.PROGRESSING, Phase.WAITING_PROMOTION, Phase.PROMOTING):
            return s.canary_version
        stored = steps.RolloutTarget.parse(s.target)
        if s.phase is Phase.WAITING and stored is not None and s.canary_version != stored.canary_version:
            return s.canary_version
        return None

    def stale_canary(self) -> tuple[Subset, ...]:
        """The subsets of a canary version this spec no longer names, still in the zones' serving
        (a new version arrived mid-rollout): a step that does not retire them leaves that version a
        share of its zones' traffic that no analysis looks at, and its instances running."""
        old = self.deployed_canary()
        if not old or old in (self.spec.canary.version, self.spec.primary.version):
            return ()
        stored = steps.RolloutTarget.parse(self.status.target)
        zones = [*(stored.canary_zones if stored is not None and stored.canary_version == old else ()),
                 *self.spec.canary.zones]
        ours = set(self.zones())  # the zones this rollout's steps are committed to
        return tuple(Subset(z, old) for z in dict.fromkeys(zones) if z in ours)

    def set_weights(self, stage: Stage, canary: int, *, mirror: int = 0, matched: bool = False,
                    retire: tuple[Subset, ...] = (), reason: str = "",
                    checks: tuple[CheckResult, ...] = ()) -> dict[str, object]:
        step = self.status.step + 1
        weights = subsets_for(self.spec, canary, self.obs.fleet)
        retire = (*retire, *self.stale_canary())
        self.actions.append(SetWeights(step, stage, canary, mirror, matched, tuple(sorted(weights.items())),
                                       retire, reason, checks))
        return {"step": step, "canary_weight": canary, "mirror_weight": mirror, "matched": matched,
                "step_started_at": self.now, "converged_at": None, "next_analysis_at": None,
                "held_since": None}

    def deadline_passed(self, since: float | None) -> bool:
        return since is not None and self.now - since > self.spec.progress_deadline_seconds

    # -- transitions -------------------------------------------------------------------------

    def rollback(self, why: str, checks: tuple[CheckResult, ...] = ()) -> Decision:
        canary_subsets = tuple(Subset(z, self.spec.canary.version) for z in self.spec.canary.zones)
        changes = self.set_weights(Stage.ROLLBACK, 0, retire=canary_subsets, reason=why, checks=checks)
        self.actions.append(CallHooks(WebhookType.POST_ROLLOUT))
        self.emit("error", "Rollback", f"rolling back {self.spec.canary.version}: {why}")
        # What failed is this spec's canary: stored as the target, or the next tick would take the spec
        # for a new one and start the canary just rolled back (aborted while initialising, before any
        # target was stored, or as a new revision arrived).
        ended = {"target": target_of(self.spec), "canary_version": self.spec.canary.version}
        return self.done(phase=Phase.FAILED, message=f"rolled back: {why}", **ended, **changes)

    def start(self) -> Decision:
        """A new target: wait for confirm-rollout, then begin at weight 0 (mirror/match where asked)."""
        a = self.spec.analysis
        base: dict[str, object] = {
            "target": target_of(self.spec), "canary_version": self.spec.canary.version,
            "primary_version": self.spec.primary.version, "failed_checks": 0, "iterations": 0,
            "pre_rollout_passed": not a.hooks(WebhookType.PRE_ROLLOUT), "started_at": self.now,
            "last_checks": (),
        }
        ok, why, muted = self.gate(WebhookType.CONFIRM_ROLLOUT)
        if not ok:
            deployed = self.deployed_canary()
            if deployed:  # a canary still runs from before the new revision: remember which, to retire it
                base["canary_version"] = deployed
            if self.status.phase is not Phase.WAITING:
                self.emit("info", "Waiting", f"{self.spec.canary.version} waits for approval: {why}", not muted)
            return self.done(phase=Phase.WAITING, message=f"waiting for approval: {why}", **base)
        self.emit("info", "Started", f"new revision {self.spec.canary.version} in {', '.join(self.spec.canary.zones)}")
        if self.spec.skip_analysis:
            changes = self.set_weights(Stage.PROMOTION, BASIS_POINTS, reason="skipAnalysis")
            return self.done(phase=Phase.PROMOTING, message="skipAnalysis: promoting", **base, **changes)
        matched = a.strategy is Strategy.AB
        changes = self.set_weights(Stage.INITIAL, 0, mirror=plan.mirror_weight_bp(a), matched=matched,
                                   reason="rollout started")
        return self.done(phase=Phase.PROGRESSING, message="canary deployed, waiting for convergence",
                         **base, **changes)

    def promote_or_wait(self, checks: tuple[CheckResult, ...]) -> Decision:
        ok, why, muted = self.gate(WebhookType.CONFIRM_PROMOTION)
        if not ok:
            if self.status.phase is not Phase.WAITING_PROMOTION:
                self.emit("info", "WaitingPromotion", f"promotion waits for approval: {why}", not muted)
            return self.done(phase=Phase.WAITING_PROMOTION, message=f"waiting for promotion approval: {why}",
                             next_analysis_at=self.now + self.spec.analysis.interval_seconds,
                             last_checks=checks)
        return self.promote(f"promoting {self.spec.canary.version}", "analysis passed", None, checks)

    def promote(self, event: str, reason: str, message: str | None,
                checks: tuple[CheckResult, ...] | None = None) -> Decision:
        """Enter Promoting with the first rung of the promotion ladder (none when already at 100%)."""
        ladder = plan.promotion_ladder(self.spec.analysis, self.status.canary_weight)
        self.emit("info", "Promoting", event)
        extra: dict[str, object] = {"canary_version": self.spec.canary.version}  # from Waiting: the one promoted
        if checks is not None:
            extra["last_checks"] = checks
        if not ladder:  # the analysis ladder already ended at 100%: nothing left to shift
            return self.done(phase=Phase.PROMOTING, message=message or "promoting", **extra)
        changes = self.set_weights(Stage.PROMOTION, ladder[0], reason=reason, checks=checks or ())
        return self.done(phase=Phase.PROMOTING, message=message or f"promoting: canary {as_percent(ladder[0])}",
                         **extra, **changes)

    def analyse(self) -> Decision:
        """One analysis iteration (Progressing or WaitingPromotion)."""
        s, a = self.status, self.spec.analysis
        interval = a.interval_seconds

        def failed_check(why: str, checks: tuple[CheckResult, ...] = (), muted: bool = False) -> Decision:
            n = s.failed_checks + 1
            if n >= a.threshold:
                # The rollback is alerted even when the last failing hook mutes its own alerts.
                self.status = s.with_(failed_checks=n, last_checks=checks)
                return self.rollback(f"{why} (failed checks {n}/{a.threshold})", checks)
            self.emit("warn", "FailedCheck", f"{why} (failed checks {n}/{a.threshold})", not muted)
            return self.done(failed_checks=n, next_analysis_at=self.now + interval,
                             message=f"check failed: {why}", last_checks=checks, held_since=None)

        if not s.pre_rollout_passed:
            ok, why, muted = self.gate(WebhookType.PRE_ROLLOUT)
            if not ok:
                return failed_check(why, muted=muted)
            s = s.with_(pre_rollout_passed=True)
            self.status = s
        if canary_idle(self.spec, s):
            verdict = analysis_mod.Verdict(())
        else:
            ok, why, muted = self.gate(WebhookType.ROLLOUT)
            if not ok:
                return failed_check(why, muted=muted)
            verdict = analysis_mod.judge(self.spec, self.metrics())
        if verdict.failed:
            return failed_check(verdict.summary(), verdict.checks)
        if verdict.held:
            held_since = s.held_since if s.held_since is not None else self.now
            if self.deadline_passed(held_since):
                return self.rollback(f"held past the progress deadline: {verdict.summary()}", verdict.checks)
            return self.done(held_since=held_since, next_analysis_at=self.now + interval,
                             message=f"holding: {verdict.summary()}", last_checks=verdict.checks)
        checks = verdict.checks
        self.status = s.with_(held_since=None)
        if s.phase is Phase.WAITING_PROMOTION:
            return self.promote_or_wait(checks)
        if a.strategy is Strategy.CANARY:
            nxt = plan.next_analysis_weight(a, s.canary_weight)
            if nxt > s.canary_weight:
                ok, why, _ = self.gate(WebhookType.CONFIRM_TRAFFIC_INCREASE)
                if not ok:
                    return self.done(next_analysis_at=self.now + interval, last_checks=checks,
                                     message=f"weight increase waits: {why}")
                changes = self.set_weights(Stage.ANALYSIS, nxt, reason=verdict.summary(), checks=checks)
                self.emit("info", "Advance", f"canary weight {as_percent(nxt)}")
                return self.done(message=f"canary {as_percent(nxt)}", last_checks=checks, **changes)
            return self.promote_or_wait(checks)
        n = s.iterations + 1
        if n < (a.iterations or 1):
            return self.done(iterations=n, next_analysis_at=self.now + interval, last_checks=checks,
                             message=f"iteration {n}/{a.iterations} passed")
        self.status = self.status.with_(iterations=n)
        return self.promote_or_wait(checks)

    def operator(self) -> Decision | None:
        """An operator's command, Flagger-style manual controls across the fleet."""
        s, cmd = self.status, self.obs.command
        if cmd is None:
            return None
        if cmd == "pause":
            self.emit("info", "Paused", "paused by operator")
            return self.done(paused=True, message="paused by operator")
        if cmd == "resume":
            self.emit("info", "Resumed", "resumed by operator")
            self.status = s.with_(paused=False)
            return None
        if s.paused:
            return self.done(message=f"paused: {cmd} ignored (resume first)")
        if cmd == "abort":
            if s.phase.active or s.phase is Phase.INITIALIZING:
                return self.rollback("aborted by operator")
            return self.done(message=f"abort ignored: phase {s.phase.value}")
        if cmd == "retry":
            if s.phase is Phase.FAILED:
                self.emit("info", "Retry", f"retrying {self.spec.canary.version}")
                return self.start()
            return self.done(message=f"retry ignored: phase {s.phase.value}")
        # promote: skip the rest of the analysis and its gates — of the revision the operator saw
        if not same_target(self.spec, s.target) and s.phase is not Phase.INITIALIZING:
            return self.done(message=f"promote ignored: a new revision ({self.spec.canary.version}) arrived; "
                                     "its analysis starts first")
        if s.phase in (Phase.PROGRESSING, Phase.WAITING_PROMOTION, Phase.WAITING):
            return self.promote(f"promoted by operator at {as_percent(s.canary_weight)}", "promoted by operator",
                                "promoted by operator")
        return self.done(message=f"promote ignored: phase {s.phase.value}")

    def tick(self) -> Decision:
        spec = self.spec
        if spec.suspend:
            return self.done(message="suspended")
        by_operator = self.operator()
        if by_operator is not None:
            return by_operator
        s = self.status
        if s.paused:
            return self.done(message="paused by operator")
        if s.phase is Phase.INITIALIZING:
            return self.initialise()
        new_target = not same_target(spec, s.target)
        stored = steps.RolloutTarget.parse(s.target)
        if new_target and s.phase is Phase.SUCCEEDED and stored is not None and \
                stored.versions == steps.RolloutTarget.of(spec).versions:
            # The promoted version's definition changed in place: both sides are that version now,
            # there is nothing to split traffic between. Say so loudly; a new version key canaries it.
            self.emit("warn", "ChangedInPlace",
                      f"{spec.canary.version} was changed in its zone repos after promotion; it is released without "
                      "analysis — declare a new version to canary a change")
            return self.done(target=target_of(spec), message=f"{spec.canary.version} changed in place after promotion")
        if s.phase in (Phase.INITIALIZED, Phase.SUCCEEDED, Phase.FAILED):
            return self.start() if new_target else Decision(s)
        if new_target and s.phase is not Phase.FINALISING:
            # Flagger restarts the analysis when the canary changes mid-rollout.
            self.emit("info", "Restart", f"canary changed ({spec.canary.version}"
                      f"{' revision ' + spec.checksum if spec.checksum else ''}): restarting analysis")
            return self.start()
        if s.phase is Phase.WAITING:
            hook = self.any_hook_ok(WebhookType.ROLLBACK)
            if hook:
                return self.rollback(f"rollback hook {hook!r} asked for it")
            return self.start()
        if s.phase is Phase.PROGRESSING:
            hook = self.any_hook_ok(WebhookType.ROLLBACK)
            if hook:
                return self.rollback(f"rollback hook {hook!r} asked for it")
        converged = self.converge()
        if converged is not None:
            return converged
        if s.phase in (Phase.PROGRESSING, Phase.WAITING_PROMOTION):
            return self.analyse() if analysis_due(self.status, self.now) else self.done()
        if s.phase is Phase.PROMOTING:
            return self.promote_step()
        if s.phase is Phase.FINALISING:
            self.actions.append(CallHooks(WebhookType.POST_ROLLOUT))
            self.emit("info", "Succeeded", f"{spec.canary.version} promoted in {', '.join(spec.canary.zones)}")
            return self.done(phase=Phase.SUCCEEDED, primary_version=spec.canary.version,
                             message=f"{spec.canary.version} promoted")
        return self.done()

    def converge(self) -> Decision | None:
        """Wait for every zone to apply the step and instances to be ready; deadline → rollback."""
        s = self.status
        if s.phase in (Phase.PROGRESSING, Phase.WAITING_PROMOTION):
            failed = [f"{z}: {r.canary_failed}" for z, r in sorted(self.obs.readiness.items())
                      if r.canary_failed and z in self.spec.canary.zones]
            if failed:
                # As Flagger does: a canary workload past its own progress deadline is rolled back
                # at once, without waiting for the rollout's deadline.
                return self.rollback(f"canary cannot progress: {'; '.join(failed)}")
        lagging, unready = self.lagging(), self.unready()
        if not lagging and not unready:
            if s.converged_at is None:
                return self.done(converged_at=self.now,
                                 next_analysis_at=self.now + self.spec.analysis.interval_seconds,
                                 message=f"step {s.step} applied everywhere")
            return None
        what = (f"zones {', '.join(lagging)} have not applied step {s.step}" if lagging
                else f"not ready: {', '.join(unready)}")
        if self.deadline_passed(s.step_started_at) and s.phase in (Phase.PROGRESSING, Phase.WAITING_PROMOTION):
            return self.rollback(f"progress deadline exceeded: {what}")
        return self.done(converged_at=None, message=f"waiting: {what}")

    def initialise(self) -> Decision:
        s = self.status
        if s.step == 0:
            changes = self.set_weights(Stage.INITIALISE, 0, reason="initialising: all traffic to the primary")
            return self.done(primary_version=self.spec.primary.version, message="initialising", **changes)
        waiting = self.converge()
        if waiting is not None:
            return waiting
        self.emit("info", "Initialized", f"{self.spec.primary.version} serves all traffic")
        return self.done(phase=Phase.INITIALIZED, message="primary serves all traffic")

    def promote_step(self) -> Decision:
        s, a = self.status, self.spec.analysis
        if s.canary_weight < BASIS_POINTS:
            if not analysis_due(s, self.now):
                return self.done()
            ladder = plan.promotion_ladder(a, s.canary_weight)
            nxt = ladder[0]
            changes = self.set_weights(Stage.PROMOTION, nxt, reason="promotion step")
            return self.done(message=f"promoting: canary {as_percent(nxt)}", **changes)
        primary_subsets = tuple(Subset(z, self.spec.primary.version) for z in self.spec.primary.zones)
        changes = self.set_weights(Stage.FINALISING, BASIS_POINTS, retire=primary_subsets,
                                   reason="canary has all traffic; retiring the old primary")
        return self.done(phase=Phase.FINALISING, message="finalising", **changes)


def decide_or_ask(status: RolloutStatus, observations: Observations, now: float) -> Decision | Needs:
    """The next status and its actions, or what this tick still needs observed (then ask again
    with it added to ``observations``: a pure function, so running the tick again is the same tick)."""
    try:
        return _Tick(status, observations, now).tick()
    except _Missing as missing:
        return missing.needs


def decide(status: RolloutStatus, observations: Observations, now: float) -> Decision:
    """The next status and the actions that take the fleet there, from complete observations."""
    out = decide_or_ask(status, observations, now)
    if isinstance(out, Needs):
        raise ValueError(f"decide() reached what was not observed: {out}; use decide_or_ask")
    return out
