"""A hub on the demo fleet's real Git repos (bare repos on disk, pushed to as a developer would)
whose zones and mesh apply steps in memory: discovery, the API and the workers are the real ones.
Shared by the hostile-input tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import httpx

from federation import specfiles
from federation.core import spec as specs
from federation.demo import run as demo_run
from federation.demo.fleet import LocalFleet
from federation.gitops import meshrepo
from federation.gitops import repo as gitrepo
from federation.gitops.aio import AsyncRepo
from federation.hub import parts as hub_parts
from federation.hub.api import app_for
from federation.hub.service import Hub
from tests import hubfakes

TOKEN = "h" * 32


class GitDiscovery(hubfakes.MemoryParts):
    """Discovery from the real clones; steps applied in memory."""

    def __init__(self, fleet: specs.Fleet, real: hub_parts.Parts) -> None:
        super().__init__(fleet, [])
        self.real = real

    async def sync(self, names: list[str] | None = None) -> None:
        await self.real.sync(names)

    async def canaries(self, running: Iterable[str] = ()) -> meshrepo.Found:  # type: ignore[override]
        return await self.real.canaries(running)

    @property
    def mesh(self) -> AsyncRepo:
        return self.real.mesh

    async def last_valid(self, path: str) -> specs.FederatedCanary | None:
        return await self.real.last_valid(path)


def push(fleet: LocalFleet, repo: str, files: dict[str, str | None], message: str = "change") -> None:
    """Commit ``files`` (path -> text, None deletes) to ``repo`` and push, as a developer."""
    r = gitrepo.Repo(fleet.git_url(repo), "main", fleet.workdir / f"dev-{repo}")
    r.ensure()

    def edit(w: gitrepo.Repo) -> list[str]:
        for path, text in files.items():
            p = w.workdir / path
            if text is None:
                p.unlink()
            else:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(text)
        return list(files)

    r.commit_and_push(edit, message, author="Dev <dev@localhost>")


def canary_text(name: str = "frontend", namespace: str = "shop", service: str = "frontend",
                change: Callable[[dict[str, Any]], None] | None = None) -> str:
    doc = demo_run.canary_doc(demo_run.Pace.fast(), ("v1", ["vms"]), ("v2", ["eks", "onprem"]))
    doc["metadata"] = {"name": name, "namespace": namespace}
    doc["spec"]["service"]["name"] = service
    doc["spec"]["analysis"]["interval"] = "10m"  # no analysis in these tests: steps and commands only
    if change is not None:
        change(doc)
    return specfiles.dump([doc])


@contextlib.asynccontextmanager
async def running_hub(tmp_path: Path, fleet: LocalFleet | None = None,
                      ) -> AsyncIterator[tuple[LocalFleet, Hub, httpx.AsyncClient]]:
    """A hub on a fresh fleet's repos, or on ``fleet``'s (a restarted hub: same state dir)."""
    if fleet is None:
        fleet = LocalFleet(tmp_path / "fleet")
        fleet.prepare()
    spec = specfiles.load_one(fleet.fleet_file, specs.Fleet)
    real = hub_parts.build(spec, tmp_path / "hub" / "work")
    hub = Hub(spec, tmp_path / "hub", tick=0.05, discover_every=3600, parts=GitDiscovery(spec, real))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app_for(hub, TOKEN)), base_url="http://hub",
                                     headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as client:
            yield fleet, hub, client
    finally:
        hub.stop()
        for t in hub.tasks.values():
            t.cancel()
        for t in hub.tasks.values():
            with contextlib.suppress(BaseException):
                await t
        await real.close()
        hub.lock.release()
