"""Benchmark: commit + push latency for one repo, and for 50 repos in parallel (bare repos on disk)."""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import time
from pathlib import Path

from federation import specfiles
from federation.gitops import repo as gitrepo
from federation.gitops.aio import AsyncRepo

ROOT = Path(__file__).resolve().parents[2]


def edit(step: int):
    def run(repo: gitrepo.Repo) -> list[str]:
        text = repo.read("frontend.yaml") or ""
        (repo.workdir / "frontend.yaml").write_text(
            specfiles.replace_mapping(text, ("spec", "serving"), {"v1": 10_000 - step, "v2": step}))
        return ["frontend.yaml"]
    return run


def make(tmp: Path, n: int) -> list[gitrepo.Repo]:
    repos = []
    for i in range(n):
        bare = tmp / f"r{i}.git"
        gitrepo.init_bare_seeded(bare, ROOT / "clusters" / "vms")
        r = gitrepo.Repo(str(bare), "main", tmp / f"w{i}")
        r.ensure()
        repos.append(r)
    return repos


def test_commit_push_latency(tmp_path: Path):
    (one,) = make(tmp_path / "one", 1)
    times = []
    for step in range(1, 21):
        t0 = time.perf_counter()
        assert one.commit_and_push(edit(step), f"step {step}", idempotency=("bench/x", step))
        times.append(time.perf_counter() - t0)
    assert [c.subject for c in one.log(20)] == [f"step {s}" for s in range(20, 0, -1)]  # each step pushed once
    many = make(tmp_path / "many", 50)

    async def parallel(step: int) -> float:
        t0 = time.perf_counter()
        shas = await asyncio.gather(*[asyncio.to_thread(r.commit_and_push, edit(step), f"step {step}") for r in many])
        assert all(shas), "a repo had nothing committed"
        return time.perf_counter() - t0

    par = [asyncio.run(parallel(s)) for s in range(1, 4)]
    hub_repos = [AsyncRepo(r) for r in many]

    async def as_the_hub(step: int) -> float:  # the executor's path: AsyncRepo.commit, idempotent per step
        t0 = time.perf_counter()
        shas = await asyncio.gather(*[r.commit(edit(step), f"step {step}", ("bench/x", step), {}) for r in hub_repos])
        assert all(shas), "a repo had nothing committed"
        return time.perf_counter() - t0

    def cpu() -> tuple[float, float]:  # this process (edits, GitPython), and every git process it waited for
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime

    before = cpu()
    hub = [asyncio.run(as_the_hub(s)) for s in range(4, 7)]
    after = cpu()
    own_ms, git_ms = ((after[i] - before[i]) * 1000 / (3 * 50) for i in (0, 1))
    for r in many:  # every repo's remote holds the six steps, in order
        r.ensure()
        assert [c.subject for c in r.log(6)] == [f"step {s}" for s in range(6, 0, -1)]
    print(f"\n[bench gitops] commit+push one repo: median {statistics.median(times) * 1000:.0f} ms, "
          f"p90 {sorted(times)[int(len(times) * 0.9) - 1] * 1000:.0f} ms over {len(times)} steps "
          f"(edit with ruamel, commit and push on the clone's head; fetch and retry when refused)")
    print(f"[bench gitops] 50 repos in parallel (default thread pool): best {min(par) * 1000:.0f} ms per step "
          f"({min(par) / 50 * 1000:.0f} ms per repo)")
    print(f"[bench gitops] a step over 50 repos as the hub commits it (AsyncRepo.commit, its git pool): best "
          f"{min(hub) * 1000:.0f} ms, runs {', '.join(f'{h * 1000:.0f}' for h in hub)} ms (goal < 500 ms); "
          f"CPU per repo step: {own_ms:.1f} ms in the hub's process, {git_ms:.1f} ms in git processes (the client's "
          f"and the local bare remotes' receive-pack side); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
