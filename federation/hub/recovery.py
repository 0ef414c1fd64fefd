"""What Git holds of a rollout's steps, read for ``core.recovery.recover`` on a worker's first tick:
the newest step record in the mesh repo and in every zone repo, and the heads of pull-request
branches (a step waiting to be merged). Callers: ``hub.worker``.
"""

from __future__ import annotations

import asyncio

from federation.core.steps import StepRecord
from federation.gitops.aio import AsyncRepo
from federation.gitops.repo import CommitInfo
from federation.runtimes.routes import MESH


async def recorded_steps(repos: dict[str, AsyncRepo], pull_request: set[str], rollout: str) -> list[StepRecord]:
    """The newest step of ``rollout`` in each repo (the mesh repo's first), branches of
    pull-request zones included."""
    names = [MESH] * (MESH in repos) + [n for n in repos if n != MESH]
    newest = await asyncio.gather(*[repos[n].last_step(rollout) for n in names])
    heads = await asyncio.gather(*[repos[n].branch_heads(f"federation/{rollout}/") for n in names
                                   if n in pull_request])
    commits: list[CommitInfo] = [c for c in newest if c is not None] + [c for h in heads for c in h]
    return [r for c in commits if (r := c.record) is not None and r.rollout == rollout]
