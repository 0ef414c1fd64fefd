"""The audit trail: every step of a service's rollouts, read back from the fleet's repos.

Each commit the hub writes carries ``Federation-*`` trailers (rollout, step, stage, weights,
analysis). This module gathers them from the mesh repo and every zone repo, one row per step, with
the commits of every repo that step touched. Callers: ``fedctl history``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from federation.core.steps import StepRecord
from federation.gitops.repo import Repo


@dataclass
class HistoryStep:
    """One step of a rollout: its record, when and by whom it was first committed, and the commit
    of every repo it touched."""

    record: StepRecord
    time: float
    author: str
    subject: str
    commits: dict[str, str] = field(default_factory=dict)  # repo name -> sha

    def for_output(self) -> dict[str, object]:
        r = self.record
        return {"rollout": r.rollout, "step": r.step, "stage": r.stage.value, "time": self.time,
                "author": self.author, "subject": self.subject, "canaryWeight": r.canary_weight,
                "weights": r.weight_map, "analysis": r.analysis, "commits": self.commits}


def collect(repos: dict[str, Repo], service: str, limit: int = 1000) -> list[HistoryStep]:
    """Steps of rollouts whose id ends in ``/service`` (or equals it), oldest first."""
    steps: dict[tuple[str, int], HistoryStep] = {}
    for name, repo in repos.items():
        for c in repo.log(limit):
            rec = c.record
            if rec is None or not (rec.rollout == service or rec.rollout.endswith("/" + service)):
                continue
            existing = steps.setdefault((rec.rollout, rec.step), HistoryStep(rec, c.time, c.author, c.subject))
            existing.commits[name] = c.sha
            existing.time = min(existing.time, c.time)
    return sorted(steps.values(), key=lambda h: (h.time, h.record.rollout, h.record.step))
