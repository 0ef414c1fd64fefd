"""A VM zone's applied step (``runtimes.vm.VmZone.observe``) from the revision each agent applied: the
step's own commit counts without asking Git (ten zones, every observation of every step); any other
revision is mapped to our steps through Git ancestry, as before."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from federation.core import spec as specs
from federation.core.state import SetWeights, Stage
from federation.core.steps import StepRecord
from federation.core.weights import Subset
from federation.gitops import repo as gitrepo
from federation.gitops.aio import AsyncRepo
from federation.hub.executor import Executor
from federation.runtimes.ssh import Pool
from federation.runtimes.vm import HostStatus, VmZone, ZoneStatus
from tests import hubfakes
from tests.fleets import vm_zone

ROOT = Path(__file__).resolve().parents[2]


class Agents:
    """Two hosts reporting the revision the test says they applied."""

    def __init__(self) -> None:
        self.revisions: list[str] = []

    async def observe(self) -> ZoneStatus:
        return ZoneStatus("vms", [HostStatus(f"h{i}", True, 1, rev) for i, rev in enumerate(self.revisions)])


def record(canary: specs.FederatedCanary, step: int, canary_weight: int) -> tuple[StepRecord, str]:
    """A step's record and its commit message (the trailers Git ancestry reads back)."""
    weights = ((Subset("vms", "v1"), 10_000 - canary_weight), (Subset("eks", "v2"), canary_weight))
    return Executor.record(canary, SetWeights(step, Stage.ANALYSIS, canary_weight, 0, False, weights))


def test_the_step_s_own_commit_counts_without_git_and_other_revisions_through_ancestry(tmp_path: Path):
    bare = tmp_path / "vms.git"
    seed = gitrepo.init_bare_seeded(bare, ROOT / "clusters" / "vms")
    repo = AsyncRepo(gitrepo.Repo(str(bare), "main", tmp_path / "clone"))
    zone = VmZone(specs.Zone.model_validate(vm_zone("vms", git={"url": str(bare)})), repo, Pool())
    agents = Agents()
    zone.agents = agents  # type: ignore[assignment]
    asked: list[tuple[str, str | None, int]] = []
    real = repo.step_reached

    async def step_reached(rollout: str, revision: str | None, step: int) -> int | None:
        asked.append((rollout, revision, step))
        return await real(rollout, revision, step)

    repo.step_reached = step_reached  # type: ignore[method-assign]
    canary = hubfakes.canary()

    async def go() -> None:
        await repo.ensure()
        one = await zone.commit(canary, *record(canary, 1, 500))
        two = await zone.commit(canary, *record(canary, 2, 1000))
        assert one and two and one != two
        agents.revisions = [two, two]
        seen: Any = await zone.observe(canary, 2)
        assert seen.applied_step() == 2 and asked == []  # this step's own commit: no Git
        agents.revisions = [two, one]  # one host behind: Git says which step its revision holds
        seen = await zone.observe(canary, 2)
        assert [h.applied_step for h in seen.hosts] == [2, 1] and seen.applied_step() == 1
        assert asked == [(canary.key, one, 2)]
        agents.revisions = [seed, two]  # the seed holds none of our steps
        assert (await zone.observe(canary, 2)).hosts[0].applied_step == 0
        # A step that changed nothing in this zone (no commit of its own here) is reached once our
        # newest commit before it is held: that one is asked of Git.
        agents.revisions = [two, two]
        assert (await zone.observe(canary, 3)).applied_step() == 3
        assert asked[-1] == (canary.key, two, 3)

    asyncio.run(go())
