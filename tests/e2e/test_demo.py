"""The demo fleet end to end: promote v2, roll back v3 — judged from traffic and Git, not the hub."""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from pathlib import Path

import httpx
import pytest
import yaml

from federation.core.state import Phase
from federation.demo import kubezones
from federation.demo import run as demo_run
from tests import gitlog

pytestmark = pytest.mark.e2e


async def edge_versions(url: str, n: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    async with httpx.AsyncClient(timeout=5.0) as c:
        for _ in range(n):
            r = await c.get(url)
            seen[f"{r.status_code}/{r.headers.get('x-version')}"] += 1
    return seen


def test_demo_promotes_v2_and_rolls_back_v3(tmp_path: Path):
    events: list[tuple[str, dict]] = []
    demo = demo_run.Demo(tmp_path / "demo", fast=True, report=lambda k, d: events.append((k, d)))

    async def scenario() -> tuple:
        await demo.setup()
        first = await demo.rollout("r1", demo_run.canary_doc(demo.pace, ("v1", ["vms"]), ("v2", ["eks", "onprem"])),
                                   Phase.SUCCEEDED)
        after_first = await edge_versions(demo.fleet.edge_url, 300)
        second = await demo.rollout("r2", demo_run.canary_doc(demo.pace, ("v2", ["eks", "onprem"]), ("v3", ["eks"])),
                                    Phase.FAILED)
        after_second = await edge_versions(demo.fleet.edge_url, 300)
        mesh_before = len(gitlog.commits(demo.fleet.workdir / "git" / "mesh.git"))
        # Nobody touches the mesh repo: a developer fixes v3's build in the eks zone repo only — on
        # Kubernetes a new image tag in the team's Deployment template of v3, nothing else.
        fix = demo_run.bump_image if demo.kube is not None else demo_run.fix_build
        third = await demo.rollout("r3", None, Phase.SUCCEEDED, change=lambda: fix(demo.fleet))
        after_third = await edge_versions(demo.fleet.edge_url, 300)
        v3 = demo.deployment("eks", "frontend-v3")
        await demo.close()
        return first, after_first, second, after_second, third, after_third, mesh_before, v3

    try:
        first, after_first, second, after_second, third, after_third, mesh_before, v3 = asyncio.run(scenario())
    finally:
        demo.stop()
    # Traffic at the edge, measured by this test: everything on v2 after promotion and after rollback.
    assert after_first == Counter({"200/v2": 300})
    assert after_second == Counter({"200/v2": 300})
    # The fixed build was noticed in the zone repo, rolled out step by step and promoted.
    assert third.phase == "Succeeded" and third.steps >= 3
    assert after_third == Counter({"200/v3": 300})
    assert not third.load.errors and third.load.codes.get("500", 0) == 0, third.load.codes
    # hey's own counts during the good rollout: no non-2xx, no connection errors caused by weight changes.
    assert first.load.requests > 200
    assert first.load.non_2xx == 0 and not first.load.errors, (first.load.codes, first.load.errors)
    # During the bad rollout the canary's injected 5xx did reach the edge (so the check was real).
    assert second.load.codes.get("500", 0) > 0
    # Git: one mesh commit per step, a rollback commit, and nothing force-pushed (history is linear).
    mesh = gitlog.commits(demo.fleet.workdir / "git" / "mesh.git")
    steps = [c for c in mesh if "Step" in c]
    keys = [(c["Rollout"], c["Step"]) for c in steps]
    assert len(keys) == len(set(keys)) >= 8
    stages = [c["Stage"] for c in reversed(steps)]
    assert stages.count("rollback") == 1 and stages[-1] == "finalising"
    assert "promotion" in stages and "finalising" in stages
    assert any(c["subject"].startswith("release v3") for c in mesh)
    third_steps = mesh[: len(mesh) - mesh_before]  # newest first: the commits of rollout 3
    assert third_steps and all(not c["subject"].startswith("release") for c in third_steps)
    assert {c.get("Target", "").split("#")[0] for c in third_steps if "Step" in c} == {"v2@eks,onprem->v3@eks"}
    rollback = next(c for c in steps if c["Stage"] == "rollback")
    assert "request-success-rate@eks" in rollback["Analysis"] and ":fail" in rollback["Analysis"]
    # The zone repo of eks no longer serves v3 (the rollback retired it), and vms retired v1.
    eks = subprocess.run(["git", "--git-dir", str(demo.fleet.workdir / "git" / "eks.git"), "show", "main:frontend.yaml"],
                         check=True, capture_output=True, text=True).stdout
    serving = eks.split("serving:", 1)[1]
    assert "v3: 10000" in serving and "v2:" not in serving
    # The humans' comments in the zone file survived the hub's edits.
    assert "# v3 is the faulty build" in eks
    # The zone kinds: eks and onprem are Kubernetes zones (the demo says its stand-ins are stand-ins)
    # when kube-apiserver is built; otherwise one line says so and every zone is a VM zone.
    kinds = {z["name"]: z["kind"] for z in yaml.safe_load(demo.fleet.fleet_file.read_text())["spec"]["zones"]}
    infos = [d["text"] for k, d in events if k == "info"]
    if kubezones.binaries() is not None:
        assert kinds == {"eks": "kubernetes", "onprem": "kubernetes", "vms": "vm"}
        assert any("STAND-INS" in t for t in infos)
        # Git: what Flux applies in eks is v3's Deployment; v2's left with the finalising step.
        files = subprocess.run(["git", "--git-dir", str(demo.fleet.workdir / "git" / "eks.git"), "ls-tree", "-r",
                                "--name-only", "main"], check=True, capture_output=True, text=True).stdout.split()
        assert "deploy/frontend/frontend-v3.yaml" in files and "deploy/frontend/frontend-v2.yaml" not in files
        # Rollout 3 came from the image bump in the team's template: the API runs the fixed image,
        # the faulty one having been 3.0.0; every step commit to a Kubernetes zone was timed.
        assert v3 is not None
        assert v3["spec"]["template"]["spec"]["containers"][0]["image"] == demo_run.FIXED_IMAGE
        assert v3["metadata"]["labels"]["team"] == "shop"
        def eks_git(*args: str) -> str:
            return subprocess.run(["git", "--git-dir", str(demo.fleet.workdir / "git" / "eks.git"), *args],
                                  check=True, capture_output=True, text=True).stdout

        fix_sha = eks_git("log", "-1", "--format=%H", "--author=Developer", "main").strip()
        assert eks_git("diff-tree", "--no-commit-id", "--name-only", "-r", fix_sha).split() == [demo_run.V3_TEMPLATE]
        assert third.timings and all(t.applied is not None and t.ready is not None and t.live is not None
                                     for t in third.timings)
        assert {t.zone for t in first.timings} == {"eks", "onprem"}
    else:
        assert set(kinds.values()) == {"vm"} and any("not built" in t for t in infos)
    # Every process the demo started is gone.
    for pid in [p.pid for p in demo.fleet.sup.procs]:
        pytest.fail(f"process {pid} still tracked")
    for zone in ("eks", "onprem", "vms"):
        for pid in demo.fleet.instance_pids(zone):
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
