"""``fedctl demo``: two real rollouts across the local fleet, judged, committed, verified.

1. v1 (on ``vms``) → v2 (on ``eks`` + ``onprem``): must promote.
2. v2 → v3 (faulty, on ``eks``): must be rolled back by analysis.
3. A developer fixes v3 in the eks zone repo only — on Kubernetes a new image tag in the team's
   Deployment template of v3 (``bump_image``), as VM zones its environment (``fix_build``): the
   hub must see the new revision by itself and promote it.
Load from ``hey`` runs through the edge the whole time, in bounded bursts. The outcome is checked
from what the edge serves, from Git and from the API server, not from the hub's own claims; in
the Kubernetes zones each step is timed from its commit to Flux-applied, Deployments ready and
route live (``demo.steptimes``). Events go to a ``report`` callback (the CLI prints them).
Callers: ``fedctl demo``, the e2e test.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import re
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from federation import specfiles
from federation.core import decide
from federation.core import spec as specs
from federation.core.errors import FederationError
from federation.core.state import Phase, SetWeights, Stage
from federation.demo import kubezones, steptimes
from federation.demo.fleet import SERVICE, LocalFleet
from federation.gitops import repo as gitrepo
from federation.hub import parts as hub_parts
from federation.hub.store import FileStore
from federation.hub.worker import RolloutWorker, TickReport

log = logging.getLogger("federation.demo")

Report = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class Pace:
    interval: str
    metric_window: str
    step_weight: int
    max_weight: int
    promotion: int
    threshold: int
    tick: float
    burst: int  # seconds per hey burst
    deadline: float  # seconds a rollout may take before the demo gives up

    @staticmethod
    def fast() -> Pace:
        return Pace("4s", "10s", 25, 50, 50, 2, 0.5, 5, 150)

    @staticmethod
    def realistic() -> Pace:
        return Pace("30s", "30s", 10, 50, 25, 3, 2.0, 15, 900)


@dataclass
class LoadStats:
    requests: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def non_2xx(self) -> int:
        return sum(n for c, n in self.codes.items() if not c.startswith("2"))

    def add(self, other: LoadStats) -> None:
        self.requests += other.requests
        self.codes.update(other.codes)
        self.errors.update(other.errors)


@dataclass
class RolloutOutcome:
    name: str
    phase: str
    seconds: float
    steps: int
    commits: int
    load: LoadStats
    served: Counter[str]
    message: str
    timings: list[steptimes.StepTiming] = field(default_factory=list)  # Kubernetes zones' step commits


_CODE = re.compile(r"\[(\d{3})\]\s+(\d+) responses")
_ERR = re.compile(r"^\s*\[(\d+)\]\s+(.+)$")


def parse_hey(text: str) -> LoadStats:
    stats = LoadStats()
    section = ""
    for line in text.splitlines():
        if line.startswith("Status code distribution"):
            section = "codes"
            continue
        if line.startswith("Error distribution"):
            section = "errors"
            continue
        if section == "codes":
            m = _CODE.search(line)
            if m:
                stats.codes[m.group(1)] += int(m.group(2))
                stats.requests += int(m.group(2))
        elif section == "errors":
            m = _ERR.match(line)
            if m:
                stats.errors[m.group(2).strip()] += int(m.group(1))
                stats.requests += int(m.group(1))
    return stats


class Load:
    """Bounded bursts of ``hey`` through the edge while a rollout runs."""

    def __init__(self, url: str, burst: int, qps: int = 25, workers: int = 4) -> None:
        self.url, self.burst, self.qps, self.workers = url, burst, qps, workers
        hey = shutil.which("hey")
        if hey is None:
            raise FederationError("hey not found: run `make install` (it installs the Debian package hey)")
        self.hey: str = hey
        self.stats = LoadStats()
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def _loop(self) -> None:
        while not self._stop.is_set():
            proc = await asyncio.create_subprocess_exec(
                self.hey, "-z", f"{self.burst}s", "-q", str(self.qps), "-c", str(self.workers),
                "-disable-keepalive", self.url,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True)
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), timeout=self.burst + 30)
            except (TimeoutError, asyncio.CancelledError):
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
                raise
            self.stats.add(parse_hey(out.decode(errors="replace")))

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="hey-load")

    async def stop(self) -> LoadStats:
        self._stop.set()
        if self._task is not None:
            # Let the running burst finish: it is bounded, and its counts belong to this rollout.
            await asyncio.wait_for(self._task, timeout=self.burst + 35)
        return self.stats


def canary_doc(pace: Pace, primary: tuple[str, list[str]], canary: tuple[str, list[str]]) -> dict[str, Any]:
    base = specfiles.read_documents(Path(__file__).resolve().parents[2] / "clusters" / "canaries" / "frontend.yaml")[0]
    doc: dict[str, Any] = copy.deepcopy(base)
    doc["metadata"] = {"name": SERVICE, "namespace": "shop"}
    doc["spec"]["primary"] = {"version": primary[0], "zones": primary[1]}
    doc["spec"]["canary"] = {"version": canary[0], "zones": canary[1]}
    doc["spec"].pop("zoneWeights", None)  # shares by zone capacity
    doc["spec"]["progressDeadlineSeconds"] = 120 if pace.tick < 1 else 600
    a = doc["spec"]["analysis"]
    a.update({"interval": pace.interval, "threshold": pace.threshold, "stepWeight": pace.step_weight,
              "maxWeight": pace.max_weight, "stepWeightPromotion": pace.promotion})
    a["metrics"] = [
        {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": pace.metric_window},
        {"name": "request-duration", "thresholdRange": {"max": 500}, "interval": pace.metric_window},
    ]
    a.pop("webhooks", None)
    return doc


def fix_build(fleet: LocalFleet, zone: str = "eks") -> str:
    """A developer fixes the faulty v3 build in a zone repo (its artifact/env), keeping the version
    name: a new revision of the canary, which the hub rolls out without anyone touching the mesh repo."""
    r = gitrepo.Repo(fleet.git_url(zone), "main", fleet.workdir / f"developer-{zone}")
    r.ensure()

    def edit(repo: gitrepo.Repo) -> list[str]:
        path = repo.workdir / f"{SERVICE}.yaml"
        text = path.read_text()
        path.write_text(text.replace('FAULT_RATE: "0.3"', 'FAULT_RATE: "0"').replace('EXTRA_LATENCY_MS: "150"',
                                                                                      'EXTRA_LATENCY_MS: "0"'))
        return [f"{SERVICE}.yaml"]

    sha = r.commit_and_push(edit, f"{SERVICE} v3: fix the faulty build", author="Developer <dev@localhost>")
    if sha is None:
        raise FederationError(f"{zone}: nothing to fix in {SERVICE}.yaml")
    return sha


V3_TEMPLATE = "workloads/frontend-v3.yaml"  # in the eks zone repo (clusters/eks)
FAULTY_IMAGE, FIXED_IMAGE = "registry.example.com/shop/frontend:3.0.0", "registry.example.com/shop/frontend:3.0.1"


def bump_image(fleet: LocalFleet, zone: str = "eks") -> str:
    """A developer fixes the faulty v3 build in a Kubernetes zone: a new image tag in the team's
    Deployment template of v3, nothing else (the ZoneRelease and the mesh repo untouched)."""
    r = gitrepo.Repo(fleet.git_url(zone), "main", fleet.workdir / f"developer-{zone}")
    r.ensure()

    def edit(repo: gitrepo.Repo) -> list[str]:
        path = repo.workdir / V3_TEMPLATE
        text = path.read_text()
        if FAULTY_IMAGE not in text:
            raise FederationError(f"{zone}: {V3_TEMPLATE} does not run {FAULTY_IMAGE}")
        path.write_text(text.replace(FAULTY_IMAGE, FIXED_IMAGE))
        return [V3_TEMPLATE]

    sha = r.commit_and_push(edit, f"{SERVICE} v3: image 3.0.1 (the fixed build)", author="Developer <dev@localhost>")
    if sha is None:
        raise FederationError(f"{zone}: nothing to change in {V3_TEMPLATE}")
    return sha


def release(fleet: LocalFleet, doc: dict[str, Any], message: str) -> str:
    """Commit a FederatedCanary to the mesh repo as a release engineer would."""
    specs.FederatedCanary.model_validate(doc)
    work = fleet.workdir / "release-engineer"
    r = gitrepo.Repo(fleet.git_url("mesh"), "main", work)
    r.ensure()

    def edit(repo: gitrepo.Repo) -> list[str]:
        path = repo.workdir / "canaries" / f"{SERVICE}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(specfiles.dump([doc]))
        return [f"canaries/{SERVICE}.yaml"]

    sha = r.commit_and_push(edit, message, author="Release Engineer <release@localhost>")
    return sha or r.head()


async def served_versions(url: str, n: int = 200) -> Counter[str]:
    """Which version answers ``n`` requests through the edge (header X-Version)."""
    out: Counter[str] = Counter()
    async with httpx.AsyncClient(timeout=5.0) as c:
        for _ in range(n):
            try:
                r = await c.get(url, headers={"Connection": "close"})
                out[r.headers.get("x-version", f"HTTP {r.status_code}")] += 1
            except httpx.HTTPError as exc:
                out[type(exc).__name__] += 1
    return out


KUBE_ZONES = ("eks", "onprem")


class Demo:
    """``kube``: run eks and onprem as Kubernetes zones on a local kube-apiserver when its binaries
    are built (``demo.kubezones``); otherwise, or with ``kube=False``, every zone is a VM zone."""

    def __init__(self, workdir: Path, fast: bool, report: Report, kube: bool = True) -> None:
        self.pace = Pace.fast() if fast else Pace.realistic()
        self.fleet = LocalFleet(workdir)
        self.report = report
        self.parts: hub_parts.Parts | None = None
        self.t0 = time.monotonic()
        self.want_kube = kube
        self.kube: kubezones.KubeZones | None = None
        self._halt = threading.Event()
        self._controllers: threading.Thread | None = None
        self._runtimes: dict[str, Any] = {}  # the Kubernetes zones' own runtimes, while timed

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    async def setup(self) -> None:
        self.report("info", {"text": f"workspace {self.fleet.workdir}"})
        await asyncio.to_thread(self.fleet.prepare)
        bins = kubezones.binaries() if self.want_kube else None
        if self.want_kube and bins is None:
            self.report("info", {"text": "kube-apiserver and etcd are not built (scripts/build-kube): eks and onprem "
                                         "run as VM zones"})
        if bins is None:
            self.report("info", {"text": "starting 3 VM zones (fed-agent over SSH, ingress Envoy, Prometheus each) "
                                         "and the edge Envoy"})
        else:
            self.fleet.kube_zones = KUBE_ZONES
            self.report("info", {"text": "starting eks and onprem as Kubernetes zones on one local kube-apiserver "
                                         "(a real API server; Flux, the kubelet and each zone's mesh are local "
                                         "STAND-INS), vms as a VM zone (fed-agent over SSH); an ingress Envoy and a "
                                         "Prometheus per zone, and the edge Envoy"})
        await asyncio.to_thread(self.fleet.start)
        if bins is not None:
            zones = {z.name: (self.fleet.git_url(z.name), self.fleet.zdir(z.name) / "envoy",
                              f"127.0.0.1:{z.admin_port}") for z in self.fleet.zones if z.name in KUBE_ZONES}
            self.kube = await asyncio.to_thread(kubezones.start, bins, self.fleet.workdir / "kube", self.fleet.sup,
                                                zones)
            self.fleet.kubeconfig = self.kube.kubeconfig
            self.fleet.fleet_file.write_text(specfiles.dump([self.fleet.fleet_doc()]))
            await asyncio.to_thread(self.kube.sync)
            self._controllers = threading.Thread(target=self._run_controllers, name="kube-controllers", daemon=True)
            self._controllers.start()
            self.report("info", {"text": f"kube-apiserver up at {self.kube.kube.url} "
                                         f"(started in {self.kube.kube.started_in:.1f}s)"})
        fleet_spec = specfiles.load_one(self.fleet.fleet_file, specs.Fleet)
        self.parts = hub_parts.build(fleet_spec, self.fleet.workdir / "hub")
        if self.kube is not None and self.kube.clock is not None:
            for name in KUBE_ZONES:  # the executor shares this mapping: its commits are noted
                self._runtimes[name] = self.parts.zones[name]
                self.parts.zones[name] = steptimes.Timed(self.parts.zones[name], self.kube.clock)
        self.report("info", {"text": f"fleet ready in {self.elapsed():.1f}s; edge at {self.fleet.edge_url}"})

    async def rollout(self, name: str, doc: dict[str, Any] | None, expect: Phase,
                      change: Callable[[], str] | None = None) -> RolloutOutcome:
        """Release ``doc`` (a FederatedCanary) through the mesh repo, or make ``change`` (a commit to a
        zone repo: the hub must see the new revision by itself), then tick until the end state."""
        assert self.parts is not None
        if change is not None:
            sha = await asyncio.to_thread(change)
            self.report("info", {"text": f"{name}: {sha[:8]} pushed to a zone repo; the hub must notice it"})
        else:
            assert doc is not None
            sha = await asyncio.to_thread(release, self.fleet, doc, f"release {doc['spec']['canary']['version']} "
                                          f"of {SERVICE} to {', '.join(doc['spec']['canary']['zones'])}")
            self.report("release", {"name": name, "sha": sha[:8], "canary": doc["spec"]["canary"],
                                    "primary": doc["spec"]["primary"]})
        store = FileStore(self.fleet.workdir / "hub" / "state")
        key = f"shop/{SERVICE}"
        steps: list[int] = []
        commits: list[str] = []
        load: Load | None = None

        def listener(r: TickReport) -> None:
            for a in r.decision.actions:
                if isinstance(a, SetWeights):
                    steps.append(a.step)
            commits.extend(r.commits.values())
            self.report("tick", {"report": r, "t": self.elapsed()})

        worker = RolloutWorker(key, self.parts, store, listener=listener)
        clock = self.kube.clock if self.kube is not None else None
        first_timing = len(clock.of()) if clock is not None else 0
        start = time.monotonic()
        try:
            while True:
                await self.parts.sync()
                canaries = await self.parts.canaries()
                _, canary, problem = canaries.get(key, ("", None, "no FederatedCanary shop/frontend in the mesh repo"))
                if canary is None:
                    raise FederationError(problem)
                report = await worker.tick(canary)
                phase = report.decision.status.phase
                if load is None and phase not in (Phase.INITIALIZING,):
                    load = Load(self.fleet.edge_url, self.pace.burst)
                    load.start()
                if phase in (Phase.SUCCEEDED, Phase.FAILED) and \
                        decide.same_target(canary.spec, report.decision.status.target):
                    break
                if time.monotonic() - start > self.pace.deadline:
                    raise FederationError(f"{name}: no end state after {self.pace.deadline:g}s "
                                          f"(phase {phase.value}: {report.decision.status.message})")
                await asyncio.sleep(self.pace.tick)
        finally:
            stats = await load.stop() if load is not None else LoadStats()
        seconds = time.monotonic() - start
        timings: list[steptimes.StepTiming] = []
        if clock is not None:
            # The last step's zone commit lands after the hub's last tick: give it a bounded while.
            for _ in range(100):  # 20 s at most
                if all(t.live is not None for t in clock.of()[first_timing:]):
                    break
                await asyncio.sleep(0.2)
            timings = clock.of()[first_timing:]
        served = await served_versions(self.fleet.edge_url)
        status = await store.load(key)
        outcome = RolloutOutcome(name, status.phase.value, seconds, len(steps), len(commits),
                                 stats, served, status.message, timings)
        self.report("outcome", {"outcome": outcome, "expected": expect.value})
        return outcome

    async def mesh_log(self) -> list[gitrepo.CommitInfo]:
        assert self.parts is not None
        return await self.parts.mesh.log(100)

    def _run_controllers(self) -> None:
        """The Kubernetes zones' controllers, as they run in a cluster: a pass every 0.3 s."""
        assert self.kube is not None
        while not self._halt.wait(0.3):
            self.kube.sync()

    def deployment(self, zone: str, name: str) -> dict[str, Any] | None:
        """A Deployment as the local API server has it (None: not there, or no Kubernetes zones)."""
        if self.kube is None:
            return None
        r = self.kube.kube.request("GET", f"/apis/apps/v1/namespaces/{kubezones.namespace(zone)}/deployments/{name}")
        return r.json() if r.status_code == 200 else None

    def applied_revision(self, zone: str) -> str:
        """The zone's Kustomization ``status.lastAppliedRevision`` ("" when none)."""
        if self.kube is None:
            return ""
        r = self.kube.kube.request("GET", self.kube.kube.path("kustomize.toolkit.fluxcd.io/v1", "Kustomization",
                                                               kubezones.FLUX_NS, zone))
        return str((r.json().get("status") or {}).get("lastAppliedRevision") or "") if r.status_code == 200 else ""

    async def close(self) -> None:
        self._halt.set()
        if self._controllers is not None:
            await asyncio.to_thread(self._controllers.join, 30)
        if self.parts is not None:
            self.parts.zones.update(self._runtimes)  # their own clients are closed by the parts
            await self.parts.close()

    def stop(self) -> None:
        self._halt.set()
        if self._controllers is not None:
            self._controllers.join(30)
        if self.kube is not None:
            self.kube.stop()
        self.fleet.stop()


async def run(workdir: Path, fast: bool, keep: bool, report: Report) -> int:
    if keep:
        report("info", {"text": "--keep: every zone runs as a VM zone (the Kubernetes zones' stand-ins live "
                                "only as long as this process)"})
    demo = Demo(workdir, fast, report, kube=not keep)
    ok = False
    try:
        await demo.setup()
        first = await demo.rollout("rollout 1: v1 (vms) -> v2 (eks + onprem)",
                                   canary_doc(demo.pace, ("v1", ["vms"]), ("v2", ["eks", "onprem"])), Phase.SUCCEEDED)
        second = await demo.rollout("rollout 2: v2 -> v3 (faulty, on eks)",
                                    canary_doc(demo.pace, ("v2", ["eks", "onprem"]), ("v3", ["eks"])), Phase.FAILED)
        fix: dict[str, str] = {}

        def change() -> str:
            fix["sha"] = bump_image(demo.fleet) if demo.kube is not None else fix_build(demo.fleet)
            return fix["sha"]

        third = await demo.rollout("rollout 3: v3 fixed in the eks repo (same version, new build: "
                                   + ("a new image tag in its Deployment template)" if demo.kube is not None
                                      else "its environment)"), None, Phase.SUCCEEDED, change=change)
        checks = verify(first, second, await demo.mesh_log(), third)
        if demo.kube is not None:
            checks += await asyncio.to_thread(verify_kube, demo, fix["sha"])
        ok = all(passed for _, passed in checks)
        report("summary", {"outcomes": [first, second, third], "checks": checks, "seconds": demo.elapsed(),
                           "figures": figures([first, second, third]),
                           "workdir": str(demo.fleet.workdir), "mesh": demo.fleet.git_url("mesh"),
                           "fleet": str(demo.fleet.fleet_file)})
        return 0 if ok else 1
    finally:
        await demo.close()
        if keep:
            report("keep", {"groups": demo.fleet.keep(), "workdir": str(demo.fleet.workdir),
                            "fleet": str(demo.fleet.fleet_file), "edge": demo.fleet.edge_url})
        else:
            await asyncio.to_thread(demo.stop)
            report("info", {"text": "stopped every process the demo started"})


def verify(first: RolloutOutcome, second: RolloutOutcome, mesh_log: list[gitrepo.CommitInfo],
           third: RolloutOutcome | None = None) -> list[tuple[str, bool]]:
    total1 = sum(first.served.values())
    total2 = sum(second.served.values())
    steps: dict[tuple[str, int], int] = Counter()
    records = [r for r in (c.record for c in mesh_log) if r is not None]
    for r in records:
        steps[(r.rollout, r.step)] += 1
    rollback_commits = [r for r in records if r.stage is Stage.ROLLBACK]
    rollbacks_expected = 1
    later: list[tuple[str, bool]] = []
    if third is not None:
        total3 = sum(third.served.values())
        later = [
            ("rollout 3 (a build fix pushed to the eks zone repo) started by the hub and promoted",
             third.phase == Phase.SUCCEEDED.value and third.steps > 0),
            (f"edge serves v3 for {third.served.get('v3', 0)}/{total3} requests after rollout 3",
             total3 > 0 and third.served.get("v3", 0) == total3),
        ]
    return [
        ("rollout 1 promoted (phase Succeeded)", first.phase == Phase.SUCCEEDED.value),
        (f"edge serves v2 for {first.served.get('v2', 0)}/{total1} requests after rollout 1",
         total1 > 0 and first.served.get("v2", 0) == total1),
        (f"no non-2xx or connection errors at the edge during rollout 1 ({first.load.requests} requests, "
         f"{first.load.non_2xx} non-2xx, {sum(first.load.errors.values())} errors)",
         first.load.requests > 0 and first.load.non_2xx == 0 and not first.load.errors),
        ("rollout 2 rolled back by analysis (phase Failed)", second.phase == Phase.FAILED.value),
        (f"edge serves v2 for {second.served.get('v2', 0)}/{total2} requests after the rollback",
         total2 > 0 and second.served.get("v2", 0) == total2),
        (f"mesh repo: one commit per step ({len(steps)} steps, {sum(steps.values())} step commits)",
         bool(steps) and all(n == 1 for n in steps.values())),
        (f"mesh repo: one rollback commit ({len(rollback_commits)})", len(rollback_commits) == rollbacks_expected),
        *later,
    ]


def _stage(v: tuple[float, float, int] | None, n: int) -> str:
    return "not seen" if v is None else f"median {v[0]:.2f}s, max {v[1]:.2f}s" + ("" if v[2] == n else f" ({v[2]}/{n})")


def step_lines(timings: list[steptimes.StepTiming]) -> list[str]:
    """One line per step commit to a Kubernetes zone: seconds from the commit to Flux-applied, to
    the zone's Deployments ready, to its route live."""
    def at(v: float | None) -> str:
        return "-" if v is None else f"+{v:.2f}s"
    return [f"{t.zone} step {t.step} commit {t.sha[:8]}: Flux applied {at(t.since(t.applied))}, Deployments ready "
            f"{at(t.since(t.ready))}, route live {at(t.since(t.live))}" for t in timings]


def figures(outcomes: list[RolloutOutcome]) -> list[str]:
    """The closing figures: per rollout requests, non-2xx, steps, time per step; and, over every
    step commit to a Kubernetes zone, commit -> Flux-applied -> Deployments ready -> route live."""
    out = []
    for o in outcomes:
        per = f"{o.seconds / o.steps:.1f}s per step" if o.steps else "no steps"
        out.append(f"{o.name.split(':')[0]}: {o.phase}, {o.load.requests} requests, {o.load.non_2xx} non-2xx, "
                   f"{sum(o.load.errors.values())} errors, {o.steps} steps in {o.seconds:.1f}s ({per})")
    timings = [t for o in outcomes for t in o.timings]
    if timings:
        s = steptimes.summary(timings)
        n = s["steps"]
        out.append(f"Kubernetes zones, {n} step commits: commit -> Flux-applied {_stage(s['applied'], n)}; "
                   f"-> Deployments ready {_stage(s['ready'], n)}; -> route live {_stage(s['live'], n)}")
    return out


def verify_kube(demo: Demo, fix: str) -> list[tuple[str, bool]]:
    """Rollout 3 on Kubernetes, checked from Git and from the API server: the developer's commit
    changed only v3's Deployment template, and eks runs the fixed image, ready, at Flux's head."""
    dev = gitrepo.Repo(demo.fleet.git_url("eks"), "main", demo.fleet.workdir / "developer-eks")
    dev.ensure()
    changed = dev.changed(fix)
    dep = demo.deployment("eks", f"{SERVICE}-v3") or {}
    containers = (((dep.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or [{}]
    image = str(containers[0].get("image", "none"))
    st, want = dep.get("status") or {}, int((dep.get("spec") or {}).get("replicas", 1))
    ready = int(st.get("readyReplicas") or 0)
    labels = (dep.get("metadata") or {}).get("labels") or {}
    applied = demo.applied_revision("eks")
    return [
        (f"rollout 3 started by a new image tag in the eks repo's Deployment template of v3 alone (commit "
         f"{fix[:8]} changed {', '.join(changed) or 'nothing'}; no ZoneRelease edit)", changed == [V3_TEMPLATE]),
        (f"eks API: Deployment {SERVICE}-v3 runs {image}, {ready}/{want} ready, rendered by the hub from the "
         "team's template (labels managed-by=federation and team=shop)",
         image == FIXED_IMAGE and want > 0 and ready == want
         and labels.get("app.kubernetes.io/managed-by") == "federation" and labels.get("team") == "shop"),
        (f"eks Flux: Kustomization lastAppliedRevision {applied or 'none'} is the zone repo's head",
         applied.endswith(":" + dev.head()) if applied else False),
    ]


async def fleet_only(workdir: Path, report: Report) -> int:
    """Start the local fleet (no hub, no rollout) and leave it running for a hub of one's own."""
    demo = Demo(workdir, True, report, kube=False)
    try:
        await demo.setup()
    except BaseException:
        await asyncio.to_thread(demo.stop)
        raise
    finally:
        await demo.close()
    report("keep", {"groups": demo.fleet.keep(), "workdir": str(demo.fleet.workdir),
                    "fleet": str(demo.fleet.fleet_file), "edge": demo.fleet.edge_url})
    return 0


def run_sync(workdir: Path, fast: bool, keep: bool, report: Report) -> int:
    return asyncio.run(run(workdir, fast, keep, report))

