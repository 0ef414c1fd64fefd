"""The audit trail: every step of a service's rollouts, read back from the fleet's repos.

Each commit the hub writes carries ``Federation-*`` trailers (rollout, step, stage, weights,
analysis). This module gathers them from the mesh repo and every zone repo, one row per step, with
the commits of every repo that step touched. Callers: ``fedctl history``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from federation.gitops.repo import CommitInfo, Repo


@dataclass
class StepRecord:
    rollout: str
    step: int
    stage: str
    time: float
    author: str
    subject: str
    canary_weight: int
    weights: dict[str, int]
    analysis: str
    commits: dict[str, str] = field(default_factory=dict)  # repo name -> sha

    def for_output(self) -> dict[str, object]:
        return {"rollout": self.rollout, "step": self.step, "stage": self.stage, "time": self.time,
                "author": self.author, "subject": self.subject, "canaryWeight": self.canary_weight,
                "weights": self.weights, "analysis": self.analysis, "commits": self.commits}


def _weights(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in filter(None, text.split(",")):
        k, _, v = part.partition("=")
        try:
            out[k] = int(v)
        except ValueError:
            continue
    return out


def collect(repos: dict[str, Repo], service: str, limit: int = 1000) -> list[StepRecord]:
    """Steps of rollouts whose id ends in ``/service`` (or equals it), oldest first."""
    steps: dict[tuple[str, int], StepRecord] = {}
    for name, repo in repos.items():
        for c in repo.log(limit):
            rec = _record(c, service)
            if rec is None:
                continue
            key = (rec.rollout, rec.step)
            existing = steps.setdefault(key, rec)
            existing.commits[name] = c.sha
            existing.time = min(existing.time, c.time)
    return sorted(steps.values(), key=lambda r: (r.time, r.rollout, r.step))


def _record(c: CommitInfo, service: str) -> StepRecord | None:
    t = c.trailers
    rollout = t.get("Rollout", "")
    if not rollout or not (rollout == service or rollout.endswith("/" + service)):
        return None
    try:
        step = int(t.get("Step", ""))
    except ValueError:
        return None
    return StepRecord(rollout, step, t.get("Stage", ""), c.time, c.author, c.subject,
                      int(t.get("Canary-Weight", "0") or 0), _weights(t.get("Weights", "")), t.get("Analysis", ""))
