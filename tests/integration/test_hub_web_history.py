"""The one-rollout page's commits per step, read back from real Git: each step's commits in the
mesh repo and the zone repos, linked through the hub's commit URL template; a bad template is
refused with one line naming the option."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx

from federation import specfiles
from federation.core import spec as specs
from federation.core.state import Stage
from federation.core.steps import RolloutTarget, StepRecord
from federation.demo import run as demo_run
from federation.demo.fleet import LocalFleet
from federation.gitops import repo as gitrepo
from federation.hub import webpages
from federation.hub.api import app_for
from federation.hub.service import Hub

TOKEN = "w" * 32
KEY = "shop/frontend"
TEMPLATE = "https://git.example.com/{repo}/commit/{sha}"


def commit_step(fleet: LocalFleet, repo_name: str, record: StepRecord, work: Path) -> str:
    r = gitrepo.Repo(fleet.git_url(repo_name), "main", work / f"writer-{repo_name}")
    r.ensure()

    def edit(repo: gitrepo.Repo) -> list[str]:
        (repo.workdir / "step.txt").write_text(f"{record.step}\n")
        return ["step.txt"]

    r.commit_and_push(edit, record.message("frontend", "v2"))
    return r.head()


def test_commits_per_step_are_read_from_git_and_linked(tmp_path: Path):
    fleet = LocalFleet(tmp_path / "fleet")
    fleet.prepare()
    demo_run.release(fleet, demo_run.canary_doc(demo_run.Pace.fast(), ("v1", ["vms"]), ("v2", ["eks", "onprem"])),
                     "release v2")
    target = RolloutTarget.parse("v1@vms->v2@eks,onprem")
    record = StepRecord(KEY, 3, Stage.ANALYSIS, 2000, target=target, analysis="request-success-rate 99.9 >= 99")
    shas = {name: commit_step(fleet, name, record, tmp_path) for name in ("eks", "mesh")}
    hub = Hub(specfiles.load_one(fleet.fleet_file, specs.Fleet), tmp_path / "hub")

    async def scenario() -> dict:
        await hub.parts.sync()
        found = await hub.parts.canaries()
        hub.canaries = {KEY: found[KEY][1]}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app_for(hub, TOKEN, commit_url=TEMPLATE)),
                                     base_url="http://hub", timeout=60) as client:
            assert (await client.get(f"/ui/api/rollouts/{KEY}/history")).status_code == 401
            assert (await client.post("/ui/login", data={"token": TOKEN})).status_code == 303
            r = await client.get(f"/ui/api/rollouts/{KEY}/history")
            assert r.status_code == 200, r.text
            return r.json()

    try:
        items = asyncio.run(scenario())["items"]
    finally:
        asyncio.run(hub.parts.close())
        hub.lock.release()
    [step] = [s for s in items if s["step"] == 3]
    assert step["stage"] == "analysis" and step["canaryWeight"] == 2000
    assert step["analysis"] == "request-success-rate 99.9 >= 99"
    assert step["commits"] == [{"repo": name, "sha": shas[name], "url": f"https://git.example.com/{name}/commit/{shas[name]}"}
                               for name in ("eks", "mesh")]


def test_a_commit_url_template_is_checked():
    assert webpages.check_commit_url(TEMPLATE) == ""
    assert webpages.check_commit_url("https://h/{url}/-/commit/{sha}") == ""
    assert "{sha}" in webpages.check_commit_url("https://h/{repo}")
    assert "unknown field(s) {hash}" in webpages.check_commit_url("https://h/{hash}")
    assert "https://" in webpages.check_commit_url("javascript:alert({sha})")
    assert webpages.commit_link("", "eks", "u", "abc") is None
    assert webpages.commit_link("{url}/commit/{sha}".replace("{url}", "https://g/{repo}"), "eks", "x.git", "abc") == \
        "https://g/eks/commit/abc"


def test_hub_run_refuses_a_bad_commit_url_in_one_line(tmp_path: Path):
    from tests.cli import fedctl

    (tmp_path / "token").write_text(TOKEN)
    r = fedctl("hub", "run", "--fleet", "clusters/fleet.yaml", "--state-dir", str(tmp_path / "s"),
               "--token-file", str(tmp_path / "token"), "--git-commit-url", "https://git.example.com/{hash}")
    assert r.returncode == 2, r
    assert r.stderr.strip().count("\n") == 0 and "--git-commit-url" in r.stderr and "{hash}" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_the_fleet_page_checks_every_part_of_a_loopback_fleet(tmp_path: Path):
    """Git repos on disk answer; the demo's Prometheus servers, agents and Envoys are not started:
    each is a row saying so. The check is an action: it needs the CSRF token."""
    fleet = LocalFleet(tmp_path / "fleet")
    fleet.prepare()
    hub = Hub(specfiles.load_one(fleet.fleet_file, specs.Fleet), tmp_path / "hub")

    async def scenario() -> dict:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app_for(hub, TOKEN)),
                                     base_url="http://hub", timeout=120) as client:
            assert (await client.post("/ui/login", data={"token": TOKEN})).status_code == 303
            page = (await client.get("/ui/")).text
            csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', page).group(1)  # type: ignore[union-attr]
            assert (await client.post("/ui/api/fleet/check")).status_code == 403
            assert (await client.get("/ui/api/fleet")).json()["reach"]["at"] is None
            r = await client.post("/ui/api/fleet/check", headers={"X-CSRF-Token": csrf})
            assert r.status_code == 200, r.text
            return (await client.get("/ui/api/fleet")).json()

    try:
        got = asyncio.run(scenario())
    finally:
        asyncio.run(hub.parts.close())
        hub.lock.release()
    rows = {(r["zone"], r["part"]): r for r in got["reach"]["rows"]}
    assert {z for z, part in rows if part == "git"} == {"eks", "onprem", "vms", "mesh"}
    assert all(r["ok"] for (z, part), r in rows.items() if part == "git"), rows
    prometheus = [r for (z, part), r in rows.items() if part == "prometheus"]
    assert len(prometheus) == 3 and not any(r["ok"] for r in prometheus)
    assert all(r["detail"] for r in prometheus)
    assert any(part == "ssh" for _, part in rows) and not any(r["ok"] for (_, part), r in rows.items() if part == "ssh")
