"""A VM zone's converge sends its agents a revision and the manifests of that same revision, also
while another rollout's step is being edited and committed in the same clone: it reads under the
clone's lock. (The chaos soak saw an agent stop a canary mid-rollout: a converge read the clone in
the middle of another service's edit and sent a state without that service.) And a file the hub
writes is replaced whole: a reader never sees it half written."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path
from typing import Any

from federation.core import spec as specs
from federation.gitops import repo as gitrepo
from federation.gitops.aio import AsyncRepo
from federation.runtimes.ssh import Pool
from federation.runtimes.vm import VmZone
from tests.fleets import vm_zone

ROOT = Path(__file__).resolve().parents[2]


class Agents:
    def __init__(self) -> None:
        self.sent: list[tuple[str, list[Any]]] = []
        self.got = asyncio.Event()

    async def apply(self, revision: str, step: int, manifests: list[Any], generation: int) -> None:
        self.sent.append((revision, manifests))
        self.got.set()


def test_converge_sends_the_manifests_of_the_revision_it_names_while_a_step_is_being_edited(tmp_path: Path):
    bare = tmp_path / "vms.git"
    gitrepo.init_bare_seeded(bare, ROOT / "clusters" / "vms")
    clone = gitrepo.Repo(str(bare), "main", tmp_path / "clone")
    repo = AsyncRepo(clone)
    zone = VmZone(specs.Zone.model_validate(vm_zone("vms", git={"url": str(bare)})), repo, Pool())
    agents = Agents()
    zone.agents = agents  # type: ignore[assignment]
    edited, go = threading.Event(), threading.Event()

    def edit(r: gitrepo.Repo) -> list[str]:
        text = r.read("frontend.yaml") or ""
        assert "v1: 10000" in text
        r.write("frontend.yaml", text.replace("v1: 10000", "v1: 9999", 1))  # another rollout's step
        edited.set()
        go.wait(30)  # the other step is still being committed
        return ["frontend.yaml"]

    async def scenario() -> None:
        await repo.ensure()
        other = asyncio.ensure_future(asyncio.to_thread(clone.commit_and_push, edit, "another rollout's step"))
        assert await asyncio.to_thread(edited.wait, 30)
        converging = asyncio.ensure_future(zone.converge(1))
        with contextlib.suppress(TimeoutError):  # an unlocked read sends at once; a locked one waits
            await asyncio.wait_for(agents.got.wait(), 2.0)
        go.set()
        sha = await other
        await converging
        revision, manifests = agents.sent[0]
        at_revision = clone.read_at(revision, "frontend.yaml") or ""
        assert ("v1: 9999" in at_revision) == (revision == sha)
        sent = [m["spec"]["serving"] for m in manifests if m["metadata"]["name"] == "frontend"]
        assert sent == [{"v1": 9999 if revision == sha else 10000}], (revision, sha, sent)

    asyncio.run(scenario())


def test_a_file_is_replaced_whole(tmp_path: Path):
    bare = tmp_path / "vms.git"
    gitrepo.init_bare_seeded(bare, ROOT / "clusters" / "vms")
    clone = gitrepo.Repo(str(bare), "main", tmp_path / "clone")
    clone.ensure()
    path = clone.workdir / "frontend.yaml"
    before = path.stat().st_ino
    clone.write("frontend.yaml", "new: text\n")
    assert path.read_text() == "new: text\n" and path.stat().st_ino != before  # a new file renamed in
    assert [p.name for p in clone.workdir.iterdir() if p.name.endswith(".tmp")] == []
