"""``rollout undo`` on real Git: a new rollout back to the previously promoted version, read from
the mesh repo's finalising commits, committed as a new FederatedCanary; refused with a reason when
there is nothing to go back to, while a rollout runs, or before a pending release started."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import httpx

from federation import specfiles
from federation.core import spec as specs
from federation.core.decide import target_of
from federation.core.state import Phase, RolloutStatus, Stage
from federation.core.steps import RolloutTarget, StepRecord
from federation.demo import run as demo_run
from federation.demo.fleet import LocalFleet
from federation.gitops import repo as gitrepo
from federation.hub.api import app_for
from federation.hub.service import Hub

TOKEN = "u" * 32
KEY = "shop/frontend"


def _finalising(fleet: LocalFleet, target: str, tmp_path: Path) -> None:
    """The commit a hub writes when a promotion completes (only its trailers matter here)."""
    r = gitrepo.Repo(fleet.git_url("mesh"), "main", tmp_path / "mesh-writer")
    r.ensure()

    def edit(repo: gitrepo.Repo) -> list[str]:
        (repo.workdir / "routes" / "frontend.txt").write_text(target)
        return ["routes/frontend.txt"]

    record = StepRecord(KEY, 9, Stage.FINALISING, 10_000, target=RolloutTarget.parse(target))
    r.commit_and_push(edit, record.message("frontend", "v2"))


def test_undo_goes_back_to_the_previously_promoted_version(tmp_path: Path):
    fleet = LocalFleet(tmp_path / "fleet")
    fleet.prepare()
    first = demo_run.canary_doc(demo_run.Pace.fast(), ("v1", ["vms"]), ("v2", ["eks", "onprem"]))
    demo_run.release(fleet, first, "release v2")
    hub = Hub(specfiles.load_one(fleet.fleet_file, specs.Fleet), tmp_path / "hub")

    async def scenario() -> list[httpx.Response]:
        await hub.parts.sync()
        found = await hub.parts.canaries()
        canary = found[KEY][1]
        assert canary is not None, found
        hub.canaries = {KEY: canary}
        hub.paths = {KEY: found[KEY][0]}
        answers = []
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app_for(hub, TOKEN)), base_url="http://hub",
                                     headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as client:
            async def undo(**params: object) -> httpx.Response:
                r = await client.post(f"/api/v1/rollouts/{KEY}/undo", params=params)
                for t in hub.tasks.values():  # undo's discovery starts a worker: not wanted here
                    t.cancel()
                answers.append(r)
                return r

            await hub.store.save(KEY, RolloutStatus(phase=Phase.PROGRESSING, target=target_of(canary.spec), step=3))
            await undo()  # 0: a rollout runs
            await hub.store.save(KEY, RolloutStatus(phase=Phase.FAILED, target=target_of(canary.spec), step=5))
            await undo()  # 1: v1 serves, and no promotion to v1 is on record
            await hub.store.save(KEY, RolloutStatus(phase=Phase.SUCCEEDED, target=target_of(canary.spec), step=9))
            _finalising(fleet, target_of(canary.spec), tmp_path)
            await undo()  # 2: v2 serves, promoted after v1: back to v1 on vms
            await undo()  # 3: the undo release has not started yet
        return answers

    try:
        answers = asyncio.run(scenario())
    finally:
        hub.stop()
        hub.lock.release()
    running, nothing, done, again = answers
    assert running.status_code == 409 and "in progress (phase Progressing)" in running.json()["message"]
    assert nothing.status_code == 409 and nothing.json()["message"].startswith("nothing to go back to")
    assert done.status_code == 200, done.text
    assert done.json()["message"].startswith("new rollout v2@eks+onprem -> v1@vms (through analysis)")
    assert again.status_code == 409 and "not started yet" in again.json()["message"]
    # The mesh repo holds the new rollout, committed under the operator's name, analysis kept.
    mesh = str(fleet.workdir / "git" / "mesh.git")
    show = subprocess.run(["git", "--git-dir", mesh, "show", "HEAD:canaries/frontend.yaml"], check=True,
                          capture_output=True, text=True).stdout
    doc = specfiles.parse_documents(show, "canaries/frontend.yaml")[0]
    assert doc["spec"]["primary"] == {"version": "v2", "zones": ["eks", "onprem"]}
    assert doc["spec"]["canary"] == {"version": "v1", "zones": ["vms"]}
    assert not doc["spec"].get("skipAnalysis")
    author, subject = subprocess.run(["git", "--git-dir", mesh, "log", "-1", "--format=%an%x1f%s"], check=True,
                                     capture_output=True, text=True).stdout.strip().split("\x1f")
    assert author == "fedctl rollout undo" and "undo v2@eks+onprem -> v1@vms" in subject
