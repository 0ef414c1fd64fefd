"""Benchmark: step latency — from ``decide()`` returning a step to every zone reporting it applied
and the edge route live, over 10 VM zone repos, 100 simulated VMs over SSH and a real Envoy edge.

Everything after the decision is the hub's own code: ``hub.worker.RolloutWorker`` ticks (observe →
decide → ``hub.executor`` → save), ``runtimes.vm.VmZone`` commits and converges each zone (real Git:
bare repos and the hub's clones, ``gitops.aio.AsyncRepo``), ``runtimes.routes.EdgeRoute`` writes the
edge's RDS file, and the hub's own observation (``RolloutWorker.observe``: every agent's status,
the applied revision mapped to our step through Git, the edge's ``version_text``) says when the
step is applied everywhere — asked back to back, so the figure is the system's, not a tick
interval's. The 100 agents are ``vm_sim.py`` (the agent's SSH front and protocol, applying at once)
in two processes; the edge is Envoy watching its RDS file, as in the demo fleet.

Phases (light timing wrappers around the real calls, on the step's critical path: back from the
edge's apply, the zone that converged last and the mesh repo's commit, in sequence or overlapping
as the executor runs them): edit (the ZoneRelease / route rendered and
written), commit (every other Git command of a commit: fetch, reset, log, status, add, commit),
push (git push), converge (agents told over SSH; the edge's file written), verify (from the last
apply to the hub seeing the step everywhere), other (the rest: scheduling between the parts).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import git

from federation.core import spec as specs
from federation.core.state import Observations, Phase, RolloutStatus, SetWeights
from federation.demo.procs import Supervisor, wait_for
from federation.gitops import repo as gitrepo
from federation.hub import parts as hub_parts
from federation.hub.executor import Executor
from federation.hub.service import CONVERGING_LOOK
from federation.hub.store import MemoryStore
from federation.hub.worker import RolloutWorker
from federation.routers import envoy as envoy_router
from federation.runtimes.routes import MESH
from tests.fleets import fleet_doc
from tests.integration.conftest import bootstrap, free_port, start_envoy, static_cluster

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ZONES = [f"z{i}" for i in range(10)]
HOSTS_PER_ZONE = 10
STEPS = 20
SERVICE = "frontend"
PHASES = ("edit", "commit", "push", "converge", "verify", "other")

ZONE_RELEASE = """\
apiVersion: federation.io/v1alpha1
kind: ZoneRelease
metadata:
  name: frontend
spec:
  service: frontend
  versions:
    v1:
      command: [fed-demo-app, --service, frontend, --version, v1, --port, "${PORT}"]
      replicas: 1
      health: /healthz
    v2:
      command: [fed-demo-app, --service, frontend, --version, v2, --port, "${PORT}"]
      replicas: 1
      health: /healthz
  serving:
    v1: 10000
"""


# -- timing wrappers (they time the real calls; nothing is replaced) --------------------------------


@dataclass
class GitCall:
    start: float = 0.0
    end: float = 0.0
    edit: float = 0.0
    push: float = 0.0


@dataclass
class ZoneTimes:
    commit: GitCall | None = None
    converge: tuple[float, float] | None = None


@dataclass
class StepTimes:
    step: int
    decided: float
    zones: dict[str, ZoneTimes] = field(default_factory=dict)
    mesh: GitCall | None = None
    applied: tuple[float, float] | None = None  # the edge's RDS write
    live: float = 0.0
    commits: dict[str, str] = field(default_factory=dict)  # repo -> the step's commit (repos that changed)
    cpu: tuple[float, float] = (0.0, 0.0)  # CPU seconds at decide: the hub process, its finished children (git)
    cpu_used: tuple[float, float] = (0.0, 0.0)  # CPU seconds spent until live: the hub, git
    processes: int = 0  # git processes started from decide to live (a count at decide, then the difference)

    def phases(self) -> dict[str, float]:
        """Seconds per phase on the critical path; they add up to the step's latency. Walked back
        from the edge's apply: whichever of the mesh commit and the last zone (its commit, then its
        converge) ended last before it, then what ended before that one began."""
        out = dict.fromkeys(PHASES, 0.0)
        zone = max(self.zones.values(), key=lambda z: z.converge[1] if z.converge else 0.0)
        assert zone.commit is not None and zone.converge is not None and self.mesh is not None and self.applied
        parts: list[tuple[float, float, GitCall, tuple[float, float] | None]] = [
            (zone.commit.start, zone.converge[1], zone.commit, zone.converge),
            (self.mesh.start, self.mesh.end, self.mesh, None)]
        gate = self.applied[0]
        while True:
            before = [p for p in parts if p[1] <= gate]
            if not before:
                break
            start, _, call, converge = max(before, key=lambda p: p[1])
            parts.remove((start, _, call, converge))
            out["edit"] += call.edit
            out["push"] += call.push
            out["commit"] += call.end - call.start - call.edit - call.push
            if converge is not None:
                out["converge"] += converge[1] - converge[0]
            gate = start
        out["converge"] += self.applied[1] - self.applied[0]
        out["verify"] = self.live - self.applied[1]
        out["other"] = self.total - sum(out.values())
        return out

    @property
    def total(self) -> float:
        return self.live - self.decided


class Recorder:
    """Which step is being applied, and the times of its parts (zone commits run in git threads)."""

    def __init__(self) -> None:
        self.current: StepTimes | None = None
        self.steps: list[StepTimes] = []
        self.local = threading.local()
        self.lock = threading.Lock()
        self.processes = 0  # git processes the hub started (all of them, any thread)
        self.names: dict[str, str] = {}  # clone workdir -> zone name, or MESH

    def git_call(self, workdir: Path) -> GitCall | None:
        if self.current is None:
            return None
        call = GitCall(start=time.perf_counter())
        name = self.names[str(workdir)]
        if name == MESH:
            self.current.mesh = call
        else:
            self.current.zones.setdefault(name, ZoneTimes()).commit = call
        return call


@contextlib.contextmanager
def timed_git(rec: Recorder) -> Iterator[None]:
    """``Repo.commit_and_push`` timed per call, the pushes in it (GitPython's ``Remote.push``, or a
    plain ``git push``) and its edit; every git process the hub starts counted. The classes are
    restored afterwards."""
    real_commit, real_push, real_execute = gitrepo.Repo.commit_and_push, git.Remote.push, git.cmd.Git.execute

    def commit_and_push(self: gitrepo.Repo, edit: Any, *args: Any, **kwargs: Any) -> str | None:
        call = rec.git_call(self.workdir)
        if call is None:
            return real_commit(self, edit, *args, **kwargs)

        def timed_edit(r: gitrepo.Repo) -> list[str]:
            t = time.perf_counter()
            try:
                return list(edit(r))
            finally:
                call.edit += time.perf_counter() - t

        rec.local.call = call
        try:
            return real_commit(self, timed_edit, *args, **kwargs)
        finally:
            rec.local.call = None
            call.end = time.perf_counter()

    @contextlib.contextmanager
    def pushing() -> Iterator[None]:
        call = getattr(rec.local, "call", None)
        t = time.perf_counter()
        try:
            yield
        finally:
            if call is not None:
                call.push += time.perf_counter() - t

    def push(self: git.Remote, *args: Any, **kwargs: Any) -> Any:
        with pushing():
            return real_push(self, *args, **kwargs)

    def execute(self: git.cmd.Git, command: Any, *args: Any, **kwargs: Any) -> Any:
        with rec.lock:
            rec.processes += 1
        if isinstance(command, list | tuple) and command[1:2] == ["push"] and not kwargs.get("as_process"):
            with pushing():
                return real_execute(self, command, *args, **kwargs)
        return real_execute(self, command, *args, **kwargs)

    gitrepo.Repo.commit_and_push = commit_and_push  # type: ignore[method-assign]
    git.Remote.push = push  # type: ignore[method-assign]
    git.cmd.Git.execute = execute  # type: ignore[method-assign]
    try:
        yield
    finally:
        gitrepo.Repo.commit_and_push = real_commit  # type: ignore[method-assign]
        git.Remote.push = real_push  # type: ignore[method-assign]
        git.cmd.Git.execute = real_execute  # type: ignore[method-assign]


class TimedZone:
    """A zone's runtime whose converge is timed; everything else is the zone's."""

    def __init__(self, inner: Any, rec: Recorder) -> None:
        self.inner, self.rec = inner, rec
        self.name, self.repo, self.pull_request = inner.name, inner.repo, inner.pull_request

    async def commit(self, *args: Any) -> str | None:
        return await self.inner.commit(*args)  # type: ignore[no-any-return]

    async def converge(self, step: int) -> None:
        t = time.perf_counter()
        await self.inner.converge(step)
        if self.rec.current is not None:
            self.rec.current.zones.setdefault(self.name, ZoneTimes()).converge = (t, time.perf_counter())

    async def observe(self, canary: Any, step: int) -> Any:
        return await self.inner.observe(canary, step)


class TimedRoute:
    """The edge route, its apply (the RDS file written by rename) timed."""

    def __init__(self, inner: Any, rec: Recorder) -> None:
        self.inner, self.rec = inner, rec

    def __getattr__(self, name: str) -> Any:  # poll_seconds, and whatever else the route says of itself
        return getattr(self.inner, name)

    def render(self, req: Any) -> list[dict[str, Any]]:
        return self.inner.render(req)  # type: ignore[no-any-return]

    async def apply(self, docs: list[dict[str, Any]]) -> None:
        t = time.perf_counter()
        await self.inner.apply(docs)
        if self.rec.current is not None:
            self.rec.current.applied = (t, time.perf_counter())

    async def live_step(self, rollout: str, service: str, step: int) -> int | None:
        return await self.inner.live_step(rollout, service, step)  # type: ignore[no-any-return]


class DecisionClock(RolloutWorker):
    """The hub's worker; the moment ``decide`` returns a step is when the clock starts."""

    rec: Recorder

    async def decide(self, canary: specs.FederatedCanary, status: RolloutStatus, obs: Observations,
                     now: float) -> Any:
        decision, obs = await super().decide(canary, status, obs, now)
        steps = [a for a in decision.actions if isinstance(a, SetWeights)]
        if steps and not steps[0].retire and len(self.rec.steps) < STEPS:
            self.rec.current = StepTimes(steps[0].step, time.perf_counter(), cpu=cpu(), processes=self.rec.processes)
        return decision, obs


# -- the fleet ------------------------------------------------------------------------------------


def canary() -> specs.FederatedCanary:
    return specs.FederatedCanary.model_validate({
        "apiVersion": specs.API_VERSION, "kind": "FederatedCanary",
        "metadata": {"name": SERVICE, "namespace": "shop"},
        "spec": {"service": {"name": SERVICE, "port": 8080},
                 "primary": {"version": "v1", "zones": ZONES[:5]}, "canary": {"version": "v2", "zones": ZONES[5:]},
                 "progressDeadlineSeconds": 600,
                 # v2 in half the zones: every zone's serving and the edge's split change at each
                 # step. 4, 8, ..., 80: twenty progressing steps (no metrics: each passes its analysis).
                 "analysis": {"interval": "1s", "threshold": 2, "stepWeight": 4, "maxWeight": 80,
                              "stepWeightPromotion": 50}}})


def start_sims(procs: Supervisor, tmp: Path) -> list[int]:
    """100 simulated VMs in two processes (each does its side of the handshakes in parallel)."""
    sim = tmp / "sim"
    sim.mkdir()
    shutil.copy(tmp / "hub_key.pub", sim / "authorized_keys")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(sim / "host_key")], check=True)
    half = len(ZONES) * HOSTS_PER_ZONE // 2
    for part in ("a", "b"):
        procs.start(f"vm-sim-{part}", [sys.executable, str(HERE / "vm_sim.py"), "--count", str(half), "--dir", str(sim),
                                       "--ports-file", f"ports-{part}.json"], env={"PYTHONPATH": os.pathsep.join(sys.path)})
    wait_for(lambda: all((sim / f"ports-{x}.json").exists() for x in "ab"), 120, "100 simulated VMs")
    a, b = (json.loads((sim / f"ports-{x}.json").read_text()) for x in "ab")
    ports = [p for pair in zip(a, b, strict=True) for p in pair]
    kind, key = (sim / "host_key.pub").read_text().split()[:2]
    (tmp / "known_hosts").write_text("".join(f"[127.0.0.1]:{p} {kind} {key}\n" for p in ports))
    return ports


def start_edge(procs: Supervisor, tmp: Path) -> tuple[Path, int]:
    """The edge Envoy as the demo fleet runs it: one cluster per zone, its route from an RDS file."""
    edge = tmp / "edge"
    edge.mkdir()
    rds = edge / "rds.json"
    rds.write_text(json.dumps({"version_info": "seed", "resources": [{
        "@type": envoy_router.ROUTE_TYPE, "name": SERVICE, "validate_clusters": True,
        "virtual_hosts": [{"name": SERVICE, "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "route": {"cluster": envoy_router.cluster(ZONES[0])}}]}]}]}))
    admin, listener = free_port(), free_port()
    clusters = [static_cluster(envoy_router.cluster(z), free_port()) for z in ZONES]
    start_envoy(procs, edge, "edge", bootstrap(admin, listener, clusters, {"rds": {
        "route_config_name": SERVICE, "config_source": {"resource_api_version": "V3",
                                                        "path_config_source": {"path": str(rds)}}}}))
    return rds, admin


def fleet(tmp: Path, ports: list[int], rds: Path, admin: int) -> specs.Fleet:
    seed = tmp / "seed-zone"
    seed.mkdir()
    (seed / "frontend.yaml").write_text(ZONE_RELEASE)
    zones = []
    for i, z in enumerate(ZONES):
        gitrepo.init_bare_seeded(tmp / "git" / f"{z}.git", seed)
        zones.append({"name": z, "kind": "vm", "git": {"url": str(tmp / "git" / f"{z}.git")},
                      "prometheus": {"url": "http://127.0.0.1:1"}, "ingress": {"address": "127.0.0.1", "port": 1},
                      "hosts": [{"address": "127.0.0.1", "port": p, "user": "hub"}
                                for p in ports[i * HOSTS_PER_ZONE:(i + 1) * HOSTS_PER_ZONE]],
                      "knownHosts": str(tmp / "known_hosts"), "identityFile": str(tmp / "hub_key")})
    gitrepo.init_bare_seeded(tmp / "git" / "mesh.git", ROOT / "clusters" / "mesh")
    mesh = {"provider": "envoy", "git": {"url": str(tmp / "git" / "mesh.git")},
            "edge": {"rdsPath": str(rds), "admin": {"address": "127.0.0.1", "port": admin}}}
    doc = fleet_doc(zones, mesh, name="bench")
    doc["spec"]["outbound"] = {"allow": ["127.0.0.0/8"]}
    return specs.Fleet.model_validate(doc)


def edge_route(admin: int) -> tuple[str, list[tuple[str, int]]]:
    """The route the edge runs (its admin config_dump): version and the default route's weights."""
    url = f"http://127.0.0.1:{admin}/config_dump?resource=dynamic_route_configs"
    with urllib.request.urlopen(url, timeout=5) as r:  # plain HTTP: no TLS context built in this process
        dump = json.loads(r.read())
    (cfg,) = [c for c in dump["configs"] if c["route_config"]["name"] == SERVICE]
    route = cfg["route_config"]["virtual_hosts"][0]["routes"][-1]["route"]
    return cfg["version_info"], [(c["name"], int(c["weight"])) for c in route["weighted_clusters"]["clusters"]]


def cpu() -> tuple[float, float]:
    t = os.times()
    return t.user + t.system, t.children_user + t.children_system


def percentile(values: list[float], q: float) -> float:
    """Nearest rank (over 20 steps, p99 is the slowest step)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


# -- the benchmark --------------------------------------------------------------------------------


def test_step_latency(tmp_path: Path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "hub_key")], check=True)
    procs = Supervisor(tmp_path / "logs")
    rec = Recorder()
    cn = canary()
    checked: list[tuple[int, list[tuple[str, int]]]] = []
    try:
        ports = start_sims(procs, tmp_path)
        rds, admin = start_edge(procs, tmp_path)
        fl = fleet(tmp_path, ports, rds, admin)

        async def run() -> None:
            parts = hub_parts.build(fl, tmp_path / "hub")
            rec.names = {str(r.repo.workdir): name for name, r in parts.repos.items()}
            for z in ZONES:
                parts.zones[z] = TimedZone(parts.zones[z], rec)  # the executor's mapping too
            parts.executor.route = parts.route = TimedRoute(parts.route, rec)
            store = MemoryStore()
            now = [1_000_000.0]
            worker = DecisionClock(cn.key, parts, store, clock=lambda: now[0])
            worker.rec = rec
            try:
                await parts.sync()
                deadline = time.monotonic() + 600
                while len(rec.steps) < STEPS:
                    assert time.monotonic() < deadline, f"{len(rec.steps)} steps in 600 s"
                    report = await worker.tick(cn)
                    assert not report.error, report.error
                    st = rec.current
                    if st is not None:
                        rec.current = None
                        status = report.decision.status
                        # The hub's own observation, back to back, until every zone and the edge have it.
                        while True:
                            obs, _ = await worker.observe(cn, status, now[0])
                            if all(obs.applied.get(z) == st.step for z in [*ZONES, MESH]):
                                st.live = time.perf_counter()
                                st.cpu_used = tuple(b - a for a, b in zip(st.cpu, cpu(), strict=True))  # type: ignore[assignment]
                                st.processes = rec.processes - st.processes
                                break
                            assert time.monotonic() < deadline, f"step {st.step} not applied: {obs.applied}"
                        st.commits = dict(report.commits)
                        rec.steps.append(st)
                        # Outside the clock: the edge runs this step's route at its weights.
                        action = next(a for a in report.decision.actions if isinstance(a, SetWeights))
                        r, _ = Executor.record(cn, action)
                        want = parts.executor.route_request(cn, r)
                        routes = envoy_router.render(want)[0]["resources"][0]["virtual_hosts"][0]["routes"]
                        expected = [(c["name"], c["weight"])
                                    for c in routes[-1]["route"]["weighted_clusters"]["clusters"]]
                        version, weights = edge_route(admin)
                        # (config_dump keeps the previous version_info when a step's route is the
                        # same as the last one's; the hub reads the RDS stat's version_text.)
                        assert weights == expected, (st.step, weights, expected)
                        assert (envoy_router.step_of(version, cn.key) or 0) <= st.step, version
                        checked.append((st.step, weights))
                    assert report.decision.status.phase not in (Phase.FAILED, Phase.SUCCEEDED)
                    now[0] += 1.0  # the analysis interval, on the worker's clock
            finally:
                await parts.close()

        with timed_git(rec):
            asyncio.run(run())
    finally:
        procs.stop_all()
    assert len(rec.steps) == STEPS and len(checked) == STEPS
    # Each repo holds exactly one commit per step it changed in (the mesh: every step), none otherwise.
    for name in [*ZONES, "mesh"]:
        log = subprocess.run(["git", "--git-dir", str(tmp_path / "git" / f"{name}.git"), "log",
                              "--format=%(trailers:key=Federation-Step,valueonly)", "main"],
                             capture_output=True, text=True, check=True).stdout.split()
        for st in rec.steps:
            assert log.count(str(st.step)) == (name in st.commits), f"{name} step {st.step}: {','.join(log)}"
    assert all(MESH in st.commits for st in rec.steps)
    assert sum(len(st.commits) == len(ZONES) + 1 for st in rec.steps) >= STEPS - 2  # progressing: every repo
    totals = [s.total for s in rec.steps]
    phases = [s.phases() for s in rec.steps]
    spent = sum(totals)
    p50, p99 = statistics.median(totals), percentile(totals, 99)
    load = os.getloadavg()
    print(f"\n[bench step latency] decide() → every zone applied + edge route live: {len(ZONES)} VM zone repos, "
          f"{len(ZONES) * HOSTS_PER_ZONE} simulated VMs over SSH, real Envoy edge, {STEPS} steps "
          f"(load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})")
    print(f"[bench step latency] p50 {p50 * 1000:.0f} ms (goal < 500 ms)")
    print(f"[bench step latency] p99 {p99 * 1000:.0f} ms (goal < 1 s)")
    for name in PHASES:
        each = [p[name] for p in phases]
        print(f"[bench step latency]   {name:>8}: {sum(each) / spent * 100:4.0f}% of the time, "
              f"median {statistics.median(each) * 1000:5.0f} ms per step")
    hub, git = (statistics.median(s.cpu_used[i] for s in rec.steps) for i in (0, 1))
    print(f"[bench step latency]   CPU per step (median): hub process {hub * 1000:.0f} ms, its git processes "
          f"{git * 1000:.0f} ms (2 cores, shared); git processes per step: "
          f"{statistics.median(s.processes for s in rec.steps):.0f}")
    print(f"[bench step latency]   (observed back to back here; a running hub first looks {CONVERGING_LOOK * 1000:.0f} ms "
          f"after a step, then at half the step's age, up to its tick)")
