"""The chaos soak: five services rolling out at once on the local demo fleet while faults strike at
random moments, with invariants checked from outside evidence only.

- The fleet: ``demo.fleet.LocalFleet`` with five services (one listener each on every zone ingress
  and on the edge) on three zones with an ingress Envoy and a Prometheus each: ``eks`` a Kubernetes
  zone on a real kube-apiserver with local stand-ins for Flux, the kubelet and the mesh
  (``tests.soak.kubesoak``; every zone a VM zone when the binaries are not built), ``onprem`` and
  ``vms`` VM zones (fed-agent over SSH).
- The hub: ``fedctl hub run`` as its own process (its own process group), SSH to the agents through
  ``proxy.Proxy`` (one per zone).
- Releases: each service gets new versions continuously through Git (the version in the canary
  zones' repos, then the FederatedCanary in the mesh repo); some builds are faulty by design
  (``FAULT_RATE`` of the demo app) and must be rolled back, the others promoted.
- Faults (seeded, the seed printed): hub SIGKILL and restart, agent SIGKILL and restart, a zone's
  Prometheus stopped and started, a Git remote unavailable for a while, SSH delayed, stalled and
  reset, an ingress Envoy (or the edge) restarted (Envoy's hot restart, as operators restart it),
  a human pushing unrelated commits to zone repos.
- The observer reads only the edge traffic (our own bounded load generator), Git history, the
  Envoys' admin endpoints, Prometheus' readiness and the process table, never the hub's API.

``run(minutes, seed, workdir)`` returns a ``Result``; ``Result.table()`` is the closing table.
Callers: ``python -m tests.soak`` (``make soak``) and ``tests/soak/test_soak.py`` (3 minutes).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from federation import specfiles
from federation.demo.fleet import LocalFleet, free_port
from federation.demo.procs import Proc, wait_for
from federation.gitops import repo as gitrepo
from tests.soak import kubesoak
from tests.soak.proxy import Proxy

SERVICES = ("frontend", "cart", "search", "payment", "profile")
ZONES = ("eks", "onprem", "vms")
NAMESPACE = "shop"
FAULTY_RATE = "0.4"  # a faulty build answers 40% of its requests with 500
CANARY_ZONES = (("eks", "onprem"), ("eks",), ("onprem",), ("vms",), ("eks", "vms"), ("onprem", "vms"))
RSS_LIMIT_MIB = 400
FD_LIMIT = 400
ROLLOUT_DEADLINE = 360.0  # seconds a release may take before it counts as stuck
BIN = Path(sys.executable).parent
HUMAN = "Alice Human <alice@localhost>"
RELEASER = "Release Engineer <release@localhost>"


@dataclass
class Release:
    service: str
    version: str
    faulty: bool
    primary: tuple[str, tuple[str, ...]]
    canary_zones: tuple[str, ...]
    started: float
    outcome: str = ""  # Succeeded / Failed from Git, "" while running
    ended: float = 0.0

    @property
    def versions(self) -> str:
        return f"{self.primary[0]}@{','.join(self.primary[1])}->{self.version}@{','.join(self.canary_zones)}"

    @property
    def deserved(self) -> str:
        return "Failed" if self.faulty else "Succeeded"


@dataclass
class Result:
    minutes: float
    seed: int
    faults: Counter[str] = field(default_factory=Counter)
    rollouts: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    violations: list[tuple[str, str]] = field(default_factory=list)  # (invariant, evidence)
    seen_at: dict[tuple[str, str], float] = field(default_factory=dict)  # when each was first seen
    clock: Any = None  # seconds into the run (the soak's), for the table's times
    peak_rss_mib: float = 0.0
    peak_fds: int = 0
    hub_starts: int = 0
    human_commits: int = 0
    step_commits: int = 0
    edge_checks: int = 0
    notes: list[str] = field(default_factory=list)
    zone_kinds: str = f"{len(ZONES)} zones"

    def violate(self, invariant: str, evidence: str) -> None:
        if (invariant, evidence) not in self.violations:
            self.violations.append((invariant, evidence))
            self.seen_at[(invariant, evidence)] = self.clock() if self.clock else 0.0

    def table(self) -> str:
        lines = [f"chaos soak: {self.minutes:g} min, seed {self.seed}, {len(SERVICES)} services, {self.zone_kinds}",
                 "", f"{'faults injected':<44}{'count':>8}"]
        lines += [f"  {k:<42}{v:>8}" for k, v in sorted(self.faults.items())]
        lines += [f"  {'total':<42}{sum(self.faults.values()):>8}", "", f"{'rollouts completed (outcome, build)':<44}{'count':>8}"]
        lines += [f"  {k:<42}{v:>8}" for k, v in sorted(self.rollouts.items())]
        lines += ["", f"{'requests (edge and zone ingresses)':<44}{'count':>8}"]
        lines += [f"  {k:<42}{v:>8}" for k, v in sorted(self.requests.items())]
        lines += ["", f"{'evidence read':<44}{'count':>8}",
                  f"  {'step commits (all repos)':<42}{self.step_commits:>8}",
                  f"  {'human commits pushed (checked kept)':<42}{self.human_commits:>8}",
                  f"  {'edge steps checked against every zone':<42}{self.edge_checks:>8}",
                  f"  {'hub starts':<42}{self.hub_starts:>8}",
                  f"  {'hub peak RSS MiB (limit ' + str(RSS_LIMIT_MIB) + ')':<42}{self.peak_rss_mib:>8.0f}",
                  f"  {'hub peak open fds (limit ' + str(FD_LIMIT) + ')':<42}{self.peak_fds:>8}",
                  "", f"{'invariant violations':<44}{len(self.violations):>8}"]
        lines += [f"  [{self.seen_at.get((inv, ev), 0.0):7.1f}s] {inv}: {ev}" for inv, ev in self.violations]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def zone_release(service: str, versions: dict[str, bool], serving: dict[str, int], kube: bool = False) -> str:
    """The ZoneRelease of ``service`` in a zone repo: ``versions`` maps name -> faulty."""
    blocks = "".join(version_block(service, v, f, kube) for v, f in versions.items())
    serve = "".join(f"    {v}: {w}\n" for v, w in serving.items()) if serving else " {}\n"
    return (f"apiVersion: federation.io/v1alpha1\nkind: ZoneRelease\nmetadata:\n  name: {service}\n"
            f"spec:\n  service: {service}\n  versions:\n{blocks}  serving:{chr(10) if serving else ''}{serve}")


def version_block(service: str, version: str, faulty: bool, kube: bool = False) -> str:
    if kube:
        return kubesoak.version_block(service, version, faulty, FAULTY_RATE)
    env = f'      env: {{FAULT_RATE: "{FAULTY_RATE}"}}\n' if faulty else ""
    return (f"    {version}:\n"
            f"      command: [fed-demo-app, --service, {service}, --version, {version}, --port, \"${{PORT}}\"]\n"
            f"      replicas: 1\n      health: /healthz\n{env}")


def canary_doc(r: Release) -> dict[str, Any]:
    return {"apiVersion": "federation.io/v1alpha1", "kind": "FederatedCanary",
            "metadata": {"name": r.service, "namespace": NAMESPACE},
            "spec": {"service": {"name": r.service, "port": 8080},
                     "primary": {"version": r.primary[0], "zones": list(r.primary[1])},
                     "canary": {"version": r.version, "zones": list(r.canary_zones)},
                     "progressDeadlineSeconds": 300,
                     "analysis": {"interval": "4s", "threshold": 2, "stepWeight": 25, "maxWeight": 50,
                                  "stepWeightPromotion": 50, "metrics": [
                                      {"name": "request-success-rate", "thresholdRange": {"min": 95},
                                       "interval": "12s", "noData": "hold"}]}}}


@dataclass
class Commit:
    sha: str
    author: str
    trailers: dict[str, str]


def git_log(bare: Path) -> list[Commit] | None:
    """Every commit of ``main``, oldest first; None while the remote is away."""
    try:
        out = subprocess.run(["git", "--git-dir", str(bare), "log", "--reverse", "--format=%H%x1f%an <%ae>%x1f%B%x1e",
                              "main"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return None
    commits = []
    for entry in filter(None, (e.strip("\n") for e in out.split("\x1e"))):
        sha, author, body = entry.split("\x1f", 2)
        trailers = {}
        for line in body.splitlines():
            k, sep, v = line.partition(": ")
            if sep and k.startswith("Federation-"):
                trailers[k] = v.strip()
        commits.append(Commit(sha, author, trailers))
    return commits


def is_ancestor(bare: Path, sha: str) -> bool | None:
    try:
        p = subprocess.run(["git", "--git-dir", str(bare), "merge-base", "--is-ancestor", sha, "main"],
                           capture_output=True, timeout=30)
    except (subprocess.SubprocessError, OSError):
        return None
    return {0: True, 1: False}.get(p.returncode)


def routes(dump: dict[str, Any]) -> dict[str, tuple[str, dict[str, int]]]:
    """Route name -> (version_info, {cluster: weight}) from an Envoy admin config_dump."""
    out: dict[str, tuple[str, dict[str, int]]] = {}
    for section in dump.get("configs", []):
        # ``?resource=dynamic_route_configs`` lists each route config itself; the full dump nests them.
        for rc in section.get("dynamic_route_configs", [section]):
            cfg = rc.get("route_config", {})
            clusters: dict[str, int] = {}
            for vh in cfg.get("virtual_hosts", []):
                for r in vh.get("routes", []):
                    action = r.get("route", {})
                    for c in action.get("weighted_clusters", {}).get("clusters", []):
                        clusters[c["name"]] = int(c.get("weight", 0))
                    if "cluster" in action:
                        clusters[action["cluster"]] = 1
            out[cfg.get("name", "")] = (str(rc.get("version_info", "")), clusters)
    return out


def proc_start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class Soak:
    def __init__(self, workdir: Path, minutes: float, seed: int, log: Any = print, kube: bool = True) -> None:
        self.workdir = workdir
        self.minutes = minutes
        self.rng = random.Random(seed)
        self.result = Result(minutes, seed)
        self.result.clock = self.elapsed
        self.log = log
        self.fleet = LocalFleet(workdir / "fleet", services=SERVICES)
        self.proxies: dict[str, Proxy] = {}
        self.git_proxies: dict[str, Proxy] = {}
        self.git_port = free_port()
        self.hub: Proc | None = None
        self.hub_port = free_port()
        self.releases: list[Release] = []
        self.current: dict[str, tuple[str, tuple[str, ...]]] = {s: ("v1", ("vms",)) for s in SERVICES}
        self.defined: dict[tuple[str, str], dict[str, bool]] = {(z, s): {"v1": False} for z in ZONES for s in SERVICES}
        self.faulty: dict[str, set[str]] = {s: set() for s in SERVICES}
        self.next_version: dict[str, int] = dict.fromkeys(SERVICES, 2)
        self.human_shas: list[tuple[str, str]] = []  # (repo, sha)
        self.started_pids: dict[int, str | None] = {}  # every pid we started or saw (start time)
        self.epochs: dict[str, int] = {}
        self.stopping = asyncio.Event()
        self.t0 = time.monotonic()
        self.step_records: dict[str, dict[tuple[str, int], dict[str, str]]] = {}
        self.edge_routes: dict[str, tuple[str, dict[str, int]]] = {}
        self.kube = kubesoak.KubeSide(self.fleet, workdir / "kube", SERVICES) if kube and \
            kubesoak.KubeSide.available() else None
        self.kube_zones = kubesoak.KUBE_ZONES if self.kube is not None else ()
        self.fleet.kube_zones = self.kube_zones
        self.vm_zones = tuple(z for z in ZONES if z not in self.kube_zones)
        self.result.zone_kinds = f"{len(ZONES)} zones ({len(self.kube_zones)} Kubernetes, {len(self.vm_zones)} VM)"

    # -- helpers ---------------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def say(self, text: str) -> None:
        self.log(f"[{self.elapsed():7.1f}s] {text}")

    def bare(self, repo: str) -> Path:
        return Path(self.fleet.git_url(repo))

    def remote(self, repo: str) -> str:
        """How the hub and the people reach a repo: git:// through that repo's proxy to git daemon
        (a remote that can be away, and whose receive-pack is the daemon's, not the pusher's child)."""
        return f"git://127.0.0.1:{self.git_proxies[repo].port}/{repo}.git"

    def remember(self, pid: int) -> None:
        if pid not in self.started_pids:
            self.started_pids[pid] = proc_start_time(pid)

    def push(self, repo: str, edit: Any, message: str, author: str, clone: str) -> str | None:
        """Commit and push like a person: retry while the remote is away; the pushed sha."""
        r = gitrepo.Repo(self.remote(repo), "main", self.workdir / "people" / clone / repo)
        for _ in range(30):
            try:
                r.ensure()
                sha = r.commit_and_push(edit, message, author=author)
                if sha is None:
                    raise RuntimeError("nothing was committed")
                return sha
            except Exception as exc:  # the remote away, a race lost five times: try again
                last = exc
                time.sleep(0.5)
        self.result.notes.append(f"{repo}: could not push {message!r}: {last}")
        return None

    # -- setup -----------------------------------------------------------------------------

    async def setup(self) -> None:
        self.say(f"seed {self.result.seed}; workspace {self.workdir}")
        await asyncio.to_thread(self.fleet.prepare)
        git_dir = self.workdir / "fleet" / "git"
        daemon = self.fleet.sup.start("git-daemon", [
            "git", "daemon", "--reuseaddr", "--export-all", "--enable=receive-pack", f"--base-path={git_dir}",
            "--listen=127.0.0.1", f"--port={self.git_port}", str(git_dir)])
        self.remember(daemon.pid)
        await asyncio.to_thread(wait_for, lambda: _listening(self.git_port), 30, "git daemon")
        for repo in (*ZONES, "mesh"):
            proxy = Proxy(self.git_port)
            await proxy.start()
            self.git_proxies[repo] = proxy
        for z in ZONES:
            def seed_files(repo: gitrepo.Repo, z: str = z) -> list[str]:
                for s in SERVICES:
                    serving = {"v1": 10_000} if z == "vms" else {}
                    (repo.workdir / f"{s}.yaml").write_text(zone_release(s, {"v1": False}, serving,
                                                                         z in self.kube_zones))
                return [f"{s}.yaml" for s in SERVICES]
            await asyncio.to_thread(self.push, z, seed_files, f"{z}: five services, v1 on vms", RELEASER, "setup")
        await asyncio.to_thread(self.fleet.start)
        await asyncio.to_thread(self.fleet.wait_ready)
        if self.kube is not None:
            await asyncio.to_thread(self.kube.start, {z: self.remote(z) for z in self.kube_zones})
        for p in self.fleet.sup.procs:
            self.remember(p.pid)
        for z in self.fleet.zones:
            if z.name in self.vm_zones:
                proxy = Proxy(z.ssh_port)
                await proxy.start()
                self.proxies[z.name] = proxy
        doc = self.fleet.fleet_doc()
        lines = []
        for zd, z in zip(doc["spec"]["zones"], self.fleet.zones, strict=True):
            zd["git"]["url"] = self.remote(z.name)
            if z.name not in self.vm_zones:
                continue
            zd["hosts"][0]["port"] = self.proxies[z.name].port
            zd["knownHosts"] = str(self.workdir / "hub-known_hosts")
            pub = (self.fleet.zdir(z.name) / "ssh_host_ed25519_key.pub").read_text().split()
            lines.append(f"[127.0.0.1]:{self.proxies[z.name].port} {pub[0]} {pub[1]}")
        (self.workdir / "hub-known_hosts").write_text("\n".join(lines) + "\n")
        doc["spec"]["mesh"]["git"]["url"] = self.remote("mesh")
        (self.workdir / "hub-fleet.yaml").write_text(specfiles.dump([doc]))
        token = self.workdir / "hub-token"
        token.write_text(os.urandom(24).hex())
        token.chmod(0o600)
        self.start_hub()
        kinds = f"{', '.join(self.kube_zones)} Kubernetes (a real kube-apiserver; Flux, kubelet and mesh stand-ins), " \
            f"{', '.join(self.vm_zones)} VMs" if self.kube_zones else "all VM zones (kube-apiserver not built)"
        self.say(f"fleet up: 3 zones ({kinds}), {len(SERVICES)} services, edge {self.fleet.edge_url}; "
                 f"hub on :{self.hub_port}")

    def start_hub(self) -> None:
        self.hub = self.fleet.sup.start("hub", [
            str(BIN / "fedctl"), "hub", "run", "--fleet", str(self.workdir / "hub-fleet.yaml"),
            "--state-dir", str(self.workdir / "hub-state"), "--listen", f"127.0.0.1:{self.hub_port}", "--tick", "0.5"],
            env={"FEDERATION_TOKEN_FILE": str(self.workdir / "hub-token"), "PATH": f"{BIN}:{os.environ.get('PATH', '')}"})
        self.remember(self.hub.pid)
        self.result.hub_starts += 1

    # -- releases --------------------------------------------------------------------------

    def release(self, service: str) -> Release | None:
        n = self.next_version[service]
        self.next_version[service] = n + 1
        version = f"v{n}"
        faulty = self.rng.random() < 0.3
        primary = self.current[service]
        zones = self.rng.choice([c for c in CANARY_ZONES if not (primary[0] and set(c) == set(primary[1]))])
        r = Release(service, version, faulty, primary, tuple(zones), self.elapsed())
        for z in zones:
            self.defined[(z, service)][version] = faulty

            def add(repo: gitrepo.Repo, z: str = z) -> list[str]:
                path = repo.workdir / f"{service}.yaml"
                text = path.read_text()
                block = version_block(service, version, faulty, z in self.kube_zones)
                if f"    {version}:\n" not in text:
                    path.write_text(text.replace("  versions:\n", "  versions:\n" + block, 1))
                return [f"{service}.yaml"]
            sha = self.push(z, add, f"{service} {version}: new build{' (faulty by design)' if faulty else ''}",
                            RELEASER, f"releaser-{service}")
            if sha:
                self.human_shas.append((z, sha))
        if faulty:
            self.faulty[service].add(version)

        def canary(repo: gitrepo.Repo) -> list[str]:
            path = repo.workdir / "canaries" / f"{service}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(specfiles.dump([canary_doc(r)]))
            return [f"canaries/{service}.yaml"]
        sha = self.push("mesh", canary, f"release {version} of {service} to {', '.join(zones)}", RELEASER,
                        f"releaser-{service}")
        if sha is None:
            return None
        self.human_shas.append(("mesh", sha))
        r.started = self.elapsed()
        self.releases.append(r)
        self.say(f"release {service} {r.versions}{' (faulty by design)' if faulty else ''}")
        return r

    async def releaser(self, service: str, until: float) -> None:
        """One service: release, wait for the outcome in Git, release again, until ``until``."""
        await asyncio.sleep(self.rng.uniform(0, 5))
        while self.elapsed() < until and not self.stopping.is_set():
            r = await asyncio.to_thread(self.release, service)
            if r is None:
                await asyncio.sleep(2.0)
                continue
            while not r.outcome:
                if self.elapsed() - r.started > ROLLOUT_DEADLINE:
                    self.result.violate("every rollout ends", f"{service} {r.versions}: no Succeeded/Failed commit in "
                                        f"the mesh repo {ROLLOUT_DEADLINE:g}s after release")
                    r.outcome = "stuck"
                    return
                await asyncio.sleep(1.0)
            if r.outcome == "Succeeded":
                self.current[service] = (r.version, r.canary_zones)
            await asyncio.sleep(self.rng.uniform(0, 3))

    # -- Git evidence ----------------------------------------------------------------------

    def read_git(self, final: bool = False) -> None:
        for repo in (*ZONES, "mesh"):
            commits = git_log(self.bare(repo))
            if commits is None:
                continue
            per_step: Counter[tuple[str, str, int]] = Counter()
            records = self.step_records.setdefault(repo, {})
            for c in commits:
                t = c.trailers
                if "Federation-Rollout" not in t or not t.get("Federation-Step", "").isdigit():
                    continue
                key = (t["Federation-Rollout"], t.get("Federation-Target", ""), int(t["Federation-Step"]))
                per_step[key] += 1
                records[(t["Federation-Rollout"], int(t["Federation-Step"]))] = {**t, "sha": c.sha}
            for key, n in per_step.items():
                if n > 1:
                    self.result.violate("one commit per step per repo",
                                        f"{repo}: {n} commits for {key[0]} step {key[2]} ({key[1]})")
            if repo == "mesh":
                self.judge_mesh(commits)
            if final:
                self.result.step_commits += sum(per_step.values())

    def judge_mesh(self, commits: list[Commit]) -> None:
        last: dict[tuple[str, str], tuple[int, str, str]] = {}
        for c in commits:
            t = c.trailers
            if "Federation-Rollout" not in t:
                continue
            key = (t["Federation-Rollout"], t.get("Federation-Target", ""))
            weight, stage = int(t.get("Federation-Canary-Weight", "0") or 0), t.get("Federation-Stage", "")
            before = last.get(key)
            if before is not None and weight < before[0] and stage != "rollback":
                self.result.violate("no weight backwards except a rollback",
                                    f"mesh {c.sha[:10]}: {key[0]} {stage} canary {weight} after {before[0]} "
                                    f"({before[2][:10]}, {before[1]})")
            last[key] = (weight, stage, c.sha)
            versions = key[1].partition("#")[0]
            for r in self.releases:
                if r.outcome or f"{NAMESPACE}/{r.service}" != key[0] or r.versions != versions:
                    continue
                if stage == "finalising":
                    r.outcome, r.ended = "Succeeded", self.elapsed()
                elif stage == "rollback":
                    r.outcome, r.ended = "Failed", self.elapsed()
                if r.outcome:
                    self.say(f"{r.service} {r.versions}: {r.outcome} (seen in Git) after {r.ended - r.started:.0f}s; "
                             f"{'as deserved' if r.outcome == r.deserved else 'NOT AS DESERVED'}")
                    if r.outcome != r.deserved:
                        self.result.violate("rollout ends as its build deserves",
                                            f"{r.service} {r.versions} ({'faulty' if r.faulty else 'good'} build) "
                                            f"ended {r.outcome}: mesh commit {c.sha[:10]} stage {stage}")

    async def git_watch(self) -> None:
        while not self.stopping.is_set():
            await asyncio.to_thread(self.read_git)
            await asyncio.sleep(2.0)

    # -- edge and zone Envoys --------------------------------------------------------------

    async def dump(self, client: httpx.AsyncClient, admin: int) -> dict[str, tuple[str, dict[str, int]]] | None:
        try:
            r = await client.get(f"http://127.0.0.1:{admin}/config_dump", params={"resource": "dynamic_route_configs"})
            return routes(r.json()) if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    def zone_holds(self, zone: str, route_version: str, rollout: str, step: int) -> bool | None:
        """Whether the revision a zone's ingress route was written for (the agent's ``version_info``:
        ``<zone repo sha>.<digest>``; in a Kubernetes zone the Kustomization's ``lastAppliedRevision``)
        holds the step's commit in that zone repo; None: not known."""
        record = self.step_records.get(zone, {}).get((rollout, step))
        revision = route_version.partition(".")[0]
        if zone in self.kube_zones and self.kube is not None:  # what the API server says Flux applied
            revision = self.kube.applied_revision(zone) or ""
        if record is None or len(revision) != 40:
            return None
        p = subprocess.run(["git", "--git-dir", str(self.bare(zone)), "merge-base", "--is-ancestor", record["sha"],
                            revision], capture_output=True, timeout=30)
        return {0: True, 1: False}.get(p.returncode)

    async def envoy_watch(self) -> None:
        """No step live at the edge before every zone it sends to routes the version it names there.

        Judged once per (service, step), when the edge is first seen at it (and did not move while
        the zones were read): a zone that does not route a version the step gives weight there, and
        whose route was written for a revision without the step's commit, had not applied the step.
        (A zone that applied it and then lost an instance's health is not this invariant.)"""
        judged: set[str] = set()
        async with httpx.AsyncClient(timeout=3.0) as c:
            while not self.stopping.is_set():
                await asyncio.sleep(1.0)
                edge = await self.dump(c, self.fleet.edge_admin)
                if edge is None:
                    continue
                zones = {z.name: await self.dump(c, z.admin_port) for z in self.fleet.zones}
                again = await self.dump(c, self.fleet.edge_admin)
                if again is None:
                    continue
                for service in SERVICES:
                    version_info = edge.get(service, ("", {}))[0]
                    if not version_info.startswith(f"{NAMESPACE}/{service}@step-") or \
                            again.get(service, ("", {}))[0] != version_info or version_info in judged:
                        continue  # not ours yet, moved while we read the zones, or judged already
                    step = int(version_info.rsplit("-", 1)[1])
                    record = self.step_records.get("mesh", {}).get((f"{NAMESPACE}/{service}", step))
                    if record is None:
                        continue
                    self.result.edge_checks += 1
                    judged.add(version_info)
                    for part in filter(None, record.get("Federation-Weights", "").split(",")):
                        subset, _, w = part.partition("=")
                        zone, _, version = subset.partition("/")
                        if int(w or 0) <= 0 or zones.get(zone) is None:
                            continue
                        route_version, clusters = zones[zone].get(service, ("", {}))  # type: ignore[union-attr]
                        if f"{service}-{version}" in clusters:
                            continue
                        holds = await asyncio.to_thread(self.zone_holds, zone, route_version,
                                                        f"{NAMESPACE}/{service}", step)
                        if holds is False:
                            self.result.violate("no step live before every zone applied it",
                                                f"edge at {version_info} (weights {record.get('Federation-Weights')}) "
                                                f"while {zone}'s ingress routes {service} to {sorted(clusters)} "
                                                f"for revision {route_version[:10]}, without the step's commit")

    # -- traffic ---------------------------------------------------------------------------

    async def edge_view(self) -> None:
        """The edge's applied routes, read every 0.25 s for the load loops."""
        async with httpx.AsyncClient(timeout=3.0) as c:
            while not self.stopping.is_set():
                edge = await self.dump(c, self.fleet.edge_admin)
                if edge is not None:
                    self.edge_routes = edge
                await asyncio.sleep(0.25)

    async def load(self, service: str) -> None:
        """Bounded load for one service: one request at a time,
        a pause of 50 ms between requests, loopback only. ``frontend`` goes through the edge; the
        others' zone is picked by the edge's applied weights (the edge's zone clusters point at the
        first service's listeners) and the request sent to that zone's ingress listener of the service."""
        edge_url = self.fleet.edge_url
        async with httpx.AsyncClient(timeout=10.0, headers={"Connection": "close"}) as c:
            while not self.stopping.is_set():
                await asyncio.sleep(0.05)
                edge = self.edge_routes
                version_info, clusters = edge.get(service, ("", {}))
                if not version_info.startswith(f"{NAMESPACE}/{service}@step-"):
                    continue  # nothing of the hub's routes this service yet
                if service == SERVICES[0]:
                    url = edge_url
                    zone = "edge"
                else:
                    live = [(n.removeprefix("zone-"), w) for n, w in clusters.items() if w > 0]
                    if not live:
                        continue
                    zone = self.rng.choices([z for z, _ in live], [w for _, w in live])[0]
                    url = self.fleet.service_url(zone, service)
                try:
                    r = await c.get(url)
                except httpx.HTTPError as exc:
                    self.result.requests["errors"] += 1
                    self.result.violate("no errors at the edge", f"{service} via {zone}: {type(exc).__name__}: {exc}")
                    continue
                self.result.requests["total"] += 1
                version = r.headers.get("x-version", "")
                if 200 <= r.status_code < 300:
                    self.result.requests["2xx"] += 1
                elif r.status_code == 500 and version in self.faulty[service]:
                    self.result.requests["5xx from faulty-by-design builds"] += 1
                else:
                    if zone != "edge":
                        now = await self.dump(c, self.fleet.edge_admin)
                        if now is None or now.get(service, ("", {}))[0] != version_info:
                            self.result.requests["raced a route change (not judged)"] += 1
                            continue
                    self.result.requests["other non-2xx"] += 1
                    self.result.violate("no non-2xx except faulty builds",
                                        f"{service} via {zone} at {version_info}: HTTP {r.status_code} "
                                        f"version {version or '-'}: {r.text[:80]!r}")

    # -- processes -------------------------------------------------------------------------

    async def process_watch(self) -> None:
        while not self.stopping.is_set():
            await asyncio.sleep(2.0)
            hub = self.hub
            if hub is not None and hub.alive():
                try:
                    status = Path(f"/proc/{hub.pid}/status").read_text()
                    rss = int(next(x for x in status.splitlines() if x.startswith("VmRSS:")).split()[1]) / 1024
                    fds = len(os.listdir(f"/proc/{hub.pid}/fd"))
                except (OSError, StopIteration, ValueError):
                    continue
                self.result.peak_rss_mib = max(self.result.peak_rss_mib, rss)
                self.result.peak_fds = max(self.result.peak_fds, fds)
                if rss > RSS_LIMIT_MIB:
                    self.result.violate("hub RSS bounded", f"hub pid {hub.pid}: VmRSS {rss:.0f} MiB > {RSS_LIMIT_MIB}")
                if fds > FD_LIMIT:
                    self.result.violate("hub fds bounded", f"hub pid {hub.pid}: {fds} open fds > {FD_LIMIT}")
            for z in self.vm_zones:
                for pid in self.fleet.instance_pids(z):
                    self.remember(pid)
            if self.kube is not None:
                for pid in self.kube.pids():
                    self.remember(pid)

    # -- faults ----------------------------------------------------------------------------

    def proc(self, name: str) -> Proc:
        return next(p for p in self.fleet.sup.procs if p.name == name)

    def restart_proc(self, name: str, extra: list[str] | None = None, env: dict[str, str] | None = None) -> Proc:
        old = self.proc(name)
        argv = [str(a) for a in old.popen.args] + (extra or [])  # type: ignore[union-attr]
        self.fleet.sup.procs.remove(old)
        new = self.fleet.sup.start(name, argv, env=env)
        self.remember(new.pid)
        return new

    async def fault_hub_kill(self) -> str:
        assert self.hub is not None
        os.killpg(self.hub.pid, signal.SIGKILL)
        await asyncio.to_thread(self.hub.popen.wait)
        self.fleet.sup.procs.remove(self.hub)
        await asyncio.sleep(self.rng.uniform(0, 3))
        self.start_hub()
        return "hub SIGKILL, restarted"

    async def fault_agent_kill(self) -> str:
        zone = self.rng.choice(self.vm_zones)
        old = self.proc(f"agent-{zone}")
        os.kill(old.pid, signal.SIGKILL)  # the agent only: its app instances run in their own sessions
        await asyncio.to_thread(old.popen.wait)
        await asyncio.sleep(self.rng.uniform(0, 3))
        ready = self.fleet.zdir(zone) / "agent.ready"
        ready.unlink(missing_ok=True)
        self.fleet.agents[zone] = self.restart_proc(f"agent-{zone}", env={"PATH": f"{BIN}:{os.environ.get('PATH', '')}"})
        await asyncio.to_thread(wait_for, ready.exists, 60, f"agent {zone} back")
        return f"agent {zone} SIGKILL, restarted"

    async def fault_prometheus(self) -> str:
        zone = self.rng.choice(ZONES)
        name = f"prometheus-{zone}"
        old = self.proc(name)
        await asyncio.to_thread(self.fleet.sup.stop, old)
        down = self.rng.uniform(3, 10)
        await asyncio.sleep(down)
        self.fleet.sup.procs.append(old)  # restart_proc takes its argv
        self.restart_proc(name)
        port = next(z.prom_port for z in self.fleet.zones if z.name == zone)
        await asyncio.to_thread(wait_for, lambda: _ok(f"http://127.0.0.1:{port}/-/ready"), 60, f"{name} back")
        return f"{zone} Prometheus stopped {down:.0f}s"

    async def fault_git(self) -> str:
        """The repo's remote is unreachable: its proxy resets every connection, new and open."""
        repo = self.rng.choice((*ZONES, "mesh"))
        proxy = self.git_proxies[repo]
        proxy.refusing = True
        proxy.reset()
        down = self.rng.uniform(3, 12)
        try:
            await asyncio.sleep(down)
        finally:
            proxy.heal()
        return f"{repo} Git remote away {down:.0f}s"

    async def fault_ssh(self) -> str:
        zone = self.rng.choice(self.vm_zones)
        proxy = self.proxies[zone]
        kind = self.rng.choice(("delay", "stall", "reset"))
        if kind == "reset":
            n = proxy.reset()
            return f"ssh {zone}: reset ({n} connections)"
        span = self.rng.uniform(3, 10)
        if kind == "delay":
            proxy.delay = self.rng.uniform(0.1, 0.5)
        else:
            proxy.stall(True)
        try:
            await asyncio.sleep(span)
        finally:
            proxy.heal()
        return f"ssh {zone}: {kind} {span:.0f}s"

    async def fault_envoy(self) -> str:
        """Envoy's hot restart (a new epoch takes the listening sockets, the old one drains)."""
        name = self.rng.choice([f"envoy-{z}" for z in ZONES] + ["envoy-edge"])
        old = self.proc(name)
        epoch = self.epochs.get(name, 0) + 1
        self.epochs[name] = epoch
        argv = [str(a) for a in old.popen.args]  # type: ignore[union-attr]
        ours = ("--restart-epoch", "--drain-time-s", "--parent-shutdown-time-s")  # the last restart's
        argv = [a for i, a in enumerate(argv) if a not in ours and (i == 0 or argv[i - 1] not in ours)]
        self.fleet.sup.procs.remove(old)
        new = self.fleet.sup.start(name, [*argv, "--restart-epoch", str(epoch), "--drain-time-s", "3",
                                          "--parent-shutdown-time-s", "6"])
        self.remember(new.pid)
        admin = self.fleet.edge_admin if name == "envoy-edge" else \
            next(z.admin_port for z in self.fleet.zones if f"envoy-{z.name}" == name)
        try:
            await asyncio.to_thread(old.popen.wait, 60)
        except subprocess.TimeoutExpired:
            self.result.notes.append(f"{name}: epoch {epoch - 1} still running 60 s after the hot restart")
        await asyncio.to_thread(self.fleet.sup.stop, old)  # its group, if anything is left in it
        if not new.alive():
            raise RuntimeError(f"{name}: the hot-restarted Envoy exited: {new.tail()}")
        await asyncio.to_thread(wait_for, lambda: _ok(f"http://127.0.0.1:{admin}/ready"), 60, f"{name} ready")
        return f"{name} hot restart (epoch {epoch})"

    def human_commit(self, zone: str) -> None:
        def edit(repo: gitrepo.Repo) -> list[str]:
            path = repo.workdir / "NOTES.md"
            old = path.read_text() if path.exists() else ""
            path.write_text(old + f"note {self.rng.randrange(10**9)}\n")
            return ["NOTES.md"]
        sha = self.push(zone, edit, "notes: an unrelated edit by a human", HUMAN, "alice")
        if sha:
            self.human_shas.append((zone, sha))

    async def fault_human(self) -> str:
        zone = self.rng.choice(ZONES)
        await asyncio.to_thread(self.human_commit, zone)
        return f"human push to {zone}"

    async def injector(self, until: float) -> None:
        kinds = {"hub SIGKILL + restart": self.fault_hub_kill, "agent SIGKILL + restart": self.fault_agent_kill,
                 "Prometheus stopped + started": self.fault_prometheus, "Git remote unavailable": self.fault_git,
                 "SSH delay/stall/reset (proxy)": self.fault_ssh, "Envoy restart (ingress or edge)": self.fault_envoy,
                 "human push to a zone repo": self.fault_human}
        if self.kube is not None:
            kube = self.kube
            kinds["Flux stalled (Kubernetes zone)"] = lambda: kube.fault_flux(self.rng)
            kinds["kube-apiserver restart"] = lambda: kube.fault_apiserver(self.rng, self.remember)
        names = sorted(kinds)
        while self.elapsed() < until and not self.stopping.is_set():
            await asyncio.sleep(self.rng.uniform(3, 10))
            kind = self.rng.choice(names)
            try:
                what = await kinds[kind]()
            except Exception as exc:  # the soak's own failure: reported, never hidden
                self.result.violate("the soak itself", f"{kind} failed: {type(exc).__name__}: {str(exc)[-300:]}")
                continue
            self.result.faults[kind] += 1
            self.say(f"fault: {what}")

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> Result:
        seconds = self.minutes * 60
        try:
            await self.setup()
            self.t0 = time.monotonic()
            watchers = [asyncio.create_task(w) for w in (self.git_watch(), self.envoy_watch(), self.process_watch())]
            watchers.append(asyncio.create_task(self.edge_view()))
            watchers += [asyncio.create_task(self.load(s)) for s in SERVICES]
            releasers = [asyncio.create_task(self.releaser(s, seconds)) for s in SERVICES]
            injector = asyncio.create_task(self.injector(seconds))
            try:
                await injector
                self.say("faults over; waiting for the rollouts in flight to end")
                await asyncio.wait_for(asyncio.gather(*releasers), ROLLOUT_DEADLINE + 30)
            finally:
                self.stopping.set()
                for t in [injector, *releasers, *watchers]:
                    t.cancel()
                await asyncio.gather(injector, *releasers, *watchers, return_exceptions=True)
            await asyncio.to_thread(self.read_git, True)
            await asyncio.to_thread(self.check_humans)
            for r in self.releases:
                self.result.rollouts[f"{r.outcome or 'unfinished'} ({'faulty' if r.faulty else 'good'} build)"] += 1
        finally:
            await self.teardown()
        return self.result

    def check_humans(self) -> None:
        for repo, sha in self.human_shas:
            kept = is_ancestor(self.bare(repo), sha)
            if kept is not True:
                self.result.violate("no human commit lost", f"{repo}: {sha[:10]} is not in main")
        self.result.human_commits = len(self.human_shas)

    async def teardown(self) -> None:
        for proxy in [*self.proxies.values(), *self.git_proxies.values()]:
            await proxy.close()
        if self.hub is not None:
            with contextlib.suppress(ValueError):
                await asyncio.to_thread(self.fleet.sup.stop, self.hub, 15.0)
        for z in self.vm_zones:
            for pid in self.fleet.instance_pids(z):
                self.remember(pid)
        if self.kube is not None:
            for pid in self.kube.pids():
                self.remember(pid)
            await asyncio.to_thread(self.kube.stop)
        await asyncio.to_thread(self.fleet.stop)
        left = []
        deadline = time.monotonic() + 20
        while True:
            left = [pid for pid, start in self.started_pids.items()
                    if start is not None and proc_start_time(pid) == start and not _zombie(pid)]
            if not left or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        for pid in left:
            cmd = _cmdline(pid)
            self.result.violate("no process left behind", f"pid {pid} still runs: {cmd[:120]}")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"


def run(minutes: float, seed: int, workdir: Path, log: Any = print, kube: bool = True) -> Result:
    """``kube``: ``eks`` a Kubernetes zone when kube-apiserver and etcd are built (else all VM zones)."""
    workdir.mkdir(parents=True, exist_ok=True)
    return asyncio.run(Soak(workdir, minutes, seed, log, kube).run())


def clean(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
