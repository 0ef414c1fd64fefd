"""Pull-request mode on the demo fleet: the eks zone repo's main branch is protected, so the hub
pushes each step there to a branch and waits. Until a merge, eks does not get the step and the mesh
route does not move (new instances before traffic); once merged, the step converges everywhere.
A hub restarted while a step waits finds the branch in Git and goes on waiting for it."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from federation import specfiles
from federation.core import spec as specs
from federation.core.state import Phase
from federation.demo import run as demo_run
from federation.demo.fleet import LocalFleet
from federation.demo.procs import Supervisor
from federation.hub import parts as hub_parts
from federation.hub.store import FileStore
from federation.hub.worker import RolloutWorker
from federation.runtimes.routes import MESH
from tests import gitlog

pytestmark = pytest.mark.e2e
KEY = "shop/frontend"


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


class MergeBot:
    """A reviewer merging the hub's branches into eks' main with merge commits."""

    def __init__(self, url: str, work: Path) -> None:
        subprocess.run(["git", "clone", "-q", url, str(work)], check=True)
        git("config", "user.name", "Reviewer", cwd=work)
        git("config", "user.email", "reviewer@localhost", cwd=work)
        self.work = work
        self.merged: list[str] = []

    def branches(self) -> list[str]:
        git("fetch", "-q", "--prune", "origin", "+refs/heads/*:refs/remotes/origin/*", cwd=self.work)
        refs = git("for-each-ref", "--format=%(refname:short)", "refs/remotes/origin/federation/", cwd=self.work).split()
        git("reset", "-q", "--hard", "origin/main", cwd=self.work)
        return [r for r in refs if subprocess.run(["git", "merge-base", "--is-ancestor", r, "HEAD"], cwd=self.work).returncode]

    def merge_all(self) -> int:
        todo = self.branches()
        for ref in todo:
            git("merge", "-q", "--no-ff", "-m", f"Merge {ref.removeprefix('origin/')}", ref, cwd=self.work)
            self.merged.append(ref)
        if todo:
            git("push", "-q", "origin", "HEAD:main", cwd=self.work)
        return len(todo)


def test_pull_request_mode_waits_for_merges(tmp_path: Path):
    fleet = LocalFleet(tmp_path / "fleet")
    fleet.prepare()
    doc = specfiles.read_documents(fleet.fleet_file)[0]
    for z in doc["spec"]["zones"]:
        if z["name"] == "eks":
            z["git"]["pullRequest"] = True
    fleet.fleet_file.write_text(specfiles.dump([doc]))
    f = specfiles.load_one(fleet.fleet_file, specs.Fleet)
    procs = Supervisor(tmp_path / "logs")
    store = FileStore(tmp_path / "state")
    try:
        fleet.start()
        procs.start("hey", ["hey", "-z", "240s", "-q", "20", "-c", "4", fleet.edge_url])
        demo_run.release(fleet, demo_run.canary_doc(demo_run.Pace.fast(), ("v1", ["vms"]), ("v2", ["eks", "onprem"])),
                         "release v2")
        bot = MergeBot(fleet.git_url("eks"), tmp_path / "reviewer")

        async def scenario() -> None:
            ad = hub_parts.build(f, tmp_path / "hub")
            await ad.sync()
            canary = (await ad.canaries())[KEY][1]
            assert canary is not None
            worker = RolloutWorker(KEY, ad, store)
            try:
                # The first step waits in a branch: nothing of it reaches eks' main or the edge.
                for _ in range(100):
                    await worker.tick(canary)
                    if KEY in ad.executor.deferred:
                        break
                    await asyncio.sleep(0.1)
                step = ad.executor.deferred[KEY].record.step
                branch = f"federation/{KEY}/step-{step}"
                assert ad.executor.deferred[KEY].waiting.keys() == {"eks"}
                eks_main = gitlog.commits(Path(fleet.git_url("eks")))
                assert not any(c.get("Step") == str(step) for c in eks_main)
                onprem = gitlog.commits(Path(fleet.git_url("onprem")))
                assert any(c.get("Step") == str(step) for c in onprem)  # a zone without PR mode got it
                for _ in range(5):  # the rollout waits: the edge keeps the previous step
                    report = await worker.tick(canary)
                    assert report.observations is not None and report.observations.applied["eks"] != step
                    assert await ad.route.live_step(KEY, "frontend", 0) != step
                assert any(r.endswith(branch) for r in bot.branches())
                # A hub restart while the step waits: the new worker finds the branch and waits on.
                await ad.close()
                ad = hub_parts.build(f, tmp_path / "hub-restarted")
                await ad.sync()
                canary = (await ad.canaries())[KEY][1]
                assert canary is not None
                worker = RolloutWorker(KEY, ad, store)
                await worker.tick(canary)
                assert ad.executor.deferred[KEY].record.step == step
                # Merged: eks converges, then the mesh route follows.
                assert bot.merge_all() == 1
                for _ in range(600):
                    report = await worker.tick(canary)
                    st = report.decision.status
                    if st.phase in (Phase.SUCCEEDED, Phase.FAILED):
                        break
                    bot.merge_all()
                    await asyncio.sleep(0.2)
                assert st.phase is Phase.SUCCEEDED, st.message
            finally:
                await ad.close()

        asyncio.run(scenario())
    finally:
        procs.stop_all()
        fleet.stop()
    # Every step of eks reached main through a reviewer's merge; each step is one commit per repo.
    eks = gitlog.commits(Path(fleet.git_url("eks")))
    steps = [c for c in eks if "Step" in c]
    merges = [c for c in eks if c["subject"].startswith("Merge federation/")]
    assert len(bot.merged) == len(merges) >= 4
    assert len({c["Step"] for c in steps}) == len(steps) >= 4
    mesh = [c for c in gitlog.commits(Path(fleet.git_url(MESH))) if "Step" in c]
    assert len({c["Step"] for c in mesh}) == len(mesh)
    assert {c["Step"] for c in steps} <= {c["Step"] for c in mesh}
