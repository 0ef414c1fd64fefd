"""The async face of a working clone: every Git command and file read runs in a worker thread.

``AsyncRepo`` wraps ``gitops.repo.Repo`` (whose own lock orders the commands on one clone) and is
the one place the hub's Git work leaves the event loop (``_off``): with many rollouts, one slow
remote delays its own repo's callers, never every tick. Callers: ``gitops.releases``,
``gitops.meshrepo``, ``runtimes`` (zones, mesh routes), ``hub``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from federation.core.spec import GitSource
from federation.gitops.repo import CommitInfo, Credentials, Repo

T = TypeVar("T")

# Git work waits on subprocesses (fetch, commit, push): a step over many repos runs them all at once.
# asyncio's default executor has cpu+4 threads (6 on two cores), which queued a 50-repo step in
# batches of 6; this pool is sized for a fleet's fan-out.
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="git")

Edit = Callable[[Repo], list[str]]


def clone_of(src: GitSource, workdir: Path) -> Repo:
    """A working clone for one of the fleet's repos (zone or mesh), signing as the Fleet asks."""
    return Repo(src.url, src.branch, workdir, Credentials(src.auth),
                signing_key=src.signing.key if src.signing else None,
                signing_format=src.signing.format.value if src.signing else "ssh")


class AsyncRepo:
    def __init__(self, repo: Repo, path: str = ".") -> None:
        self.repo = repo
        self.path = path  # the part of the repository that is the fleet's (GitSource.path)

    @staticmethod
    def of(src: GitSource, workdir: Path) -> AsyncRepo:
        return AsyncRepo(clone_of(src, workdir), src.path)

    @property
    def url(self) -> str:
        return self.repo.url

    async def _off(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(_POOL, functools.partial(fn, *args, **kwargs))

    def under(self, *parts: str) -> str:
        """A path below this repo's fleet path."""
        return "/".join(p for p in (self.path, *parts) if p and p != ".")

    async def ensure(self) -> None:
        await self._off(self.repo.ensure)

    async def head(self) -> str:
        return await self._off(self.repo.head)

    async def read_all(self, under: str) -> list[tuple[str, str]]:
        """(path, text) of every YAML file under ``under``, read in one go off the loop."""
        def read() -> list[tuple[str, str]]:
            return [(p, self.repo.read(p) or "") for p in self.repo.files(under)]
        return await self._off(read)

    async def call(self, fn: Callable[[Repo], T]) -> T:
        """Run ``fn`` on the clone off the loop (parsing what it holds, several reads at once)."""
        return await self._off(fn, self.repo)

    async def commit(self, edit: Edit, message: str, record_key: tuple[str, int], expect: dict[str, str],
                     branch: str | None = None) -> str | None:
        """Commit and push one step's edit (found, not redone, when the step is already there)."""
        return await self._off(self.repo.commit_and_push, edit, message, idempotency=record_key, expect=expect,
                               branch=branch)

    async def log(self, limit: int = 200) -> list[CommitInfo]:
        return await self._off(self.repo.log, limit)

    async def last_step(self, rollout: str) -> CommitInfo | None:
        return await self._off(self.repo.last_step, rollout)

    async def branch_heads(self, prefix: str) -> list[CommitInfo]:
        return await self._off(self.repo.branch_heads, prefix)

    async def merged(self, sha: str) -> bool:
        return await self._off(self.repo.merged, sha)

    async def step_reached(self, rollout: str, revision: str | None, step: int) -> int | None:
        return await self._off(self.repo.step_reached, rollout, revision, step)
