"""A symlink committed to a repo never makes the hub read or write outside its clone: the route
file, a ZoneRelease, or a directory on the way to them. The step fails with an error naming the
path, nothing is written anywhere, nothing is committed, and the clone is left clean. Real Git:
bare repos on disk, pushed to as a developer would."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from federation.core.errors import PermanentError
from federation.core.state import Stage
from federation.core.steps import StepRecord
from federation.core.weights import Subset
from federation.demo.fleet import LocalFleet
from federation.gitops import meshrepo, releases
from federation.gitops import repo as gitrepo
from federation.gitops.aio import AsyncRepo

KEY = "shop/frontend"


def fleet_with(tmp_path: Path, repo: str, link: str, target: Path) -> tuple[LocalFleet, gitrepo.Repo]:
    """The demo fleet's repos, with ``link`` in ``repo`` committed as a symlink to ``target``."""
    fleet = LocalFleet(tmp_path / "fleet")
    fleet.prepare()
    dev = tmp_path / "dev"
    subprocess.run(["git", "clone", "-q", fleet.git_url(repo), str(dev)], check=True)
    p = dev / link
    if p.is_dir() and not p.is_symlink():
        subprocess.run(["git", "rm", "-rq", link], cwd=dev, check=True)
    elif p.exists():
        p.unlink()
    p.parent.mkdir(parents=True, exist_ok=True)
    p.symlink_to(target)
    git = ["git", "-c", "user.name=Mallory", "-c", "user.email=m@localhost"]
    subprocess.run(["git", "add", "-A", "."], cwd=dev, check=True)
    subprocess.run([*git, "commit", "-qm", "a symlink"], cwd=dev, check=True)
    subprocess.run(["git", "push", "-q", "origin", "HEAD:main"], cwd=dev, check=True)
    hub = gitrepo.Repo(fleet.git_url(repo), "main", tmp_path / "hub-clone")
    hub.ensure()
    return fleet, hub


def record() -> StepRecord:
    return StepRecord(KEY, 1, Stage.ANALYSIS, 1000, ((Subset("eks", "v2"), 1000), (Subset("vms", "v1"), 9000)))


def assert_clean_and_unpushed(hub: gitrepo.Repo, head_before: str) -> None:
    hub.ensure()
    assert hub.head() == head_before  # nothing committed, nothing pushed
    assert str(hub._git().git.status("--porcelain")) == ""


@pytest.mark.parametrize("link", ["routes/frontend.yaml", "routes"])
def test_a_symlinked_route_file_or_directory_is_refused(tmp_path: Path, link: str):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "frontend.yaml"
    victim.write_text("precious\n")
    _, hub = fleet_with(tmp_path, "mesh", link, victim if link.endswith(".yaml") else outside)
    head = hub.head()
    with pytest.raises(gitrepo.PathRefused) as err:
        asyncio.run(meshrepo.commit_route(AsyncRepo(hub), "frontend", [{"kind": "Route"}], record(), "step 1"))
    assert "routes" in str(err.value) and "symlink" in str(err.value)
    assert victim.read_text() == "precious\n" and sorted(os.listdir(outside)) == ["frontend.yaml"]
    assert_clean_and_unpushed(hub, head)


def test_a_symlinked_zone_release_is_neither_read_nor_written(tmp_path: Path):
    outside = tmp_path / "outside.yaml"
    outside.write_text((Path(__file__).resolve().parents[2] / "clusters/eks/frontend.yaml").read_text())
    before = outside.read_text()
    _, hub = fleet_with(tmp_path, "eks", "frontend.yaml", outside)
    head = hub.head()
    assert releases.find(hub, ".", "frontend") is None  # the symlink is not a file of the repo
    with pytest.raises(gitrepo.PathRefused):
        hub.read("frontend.yaml")
    edit = releases.edit_serving("eks", ".", "frontend", record())
    with pytest.raises(PermanentError, match="no ZoneRelease for service 'frontend'"):
        hub.commit_and_push(edit, "step 1")
    assert outside.read_text() == before
    assert_clean_and_unpushed(hub, head)


def test_a_failing_edit_leaves_nothing_half_applied(tmp_path: Path):
    outside = tmp_path / "outside.yaml"
    outside.write_text("x: 1\n")
    _, hub = fleet_with(tmp_path, "mesh", "routes/evil.yaml", outside)
    head = hub.head()

    def edit(w: gitrepo.Repo) -> list[str]:
        w.write("routes/new.yaml", "a: 1\n")  # written first ...
        w.write("routes/evil.yaml", "a: 2\n")  # ... then refused
        return ["routes/new.yaml", "routes/evil.yaml"]

    with pytest.raises(gitrepo.PathRefused, match=r"routes/evil\.yaml"):
        hub.commit_and_push(edit, "two files")
    assert not (hub.workdir / "routes/new.yaml").exists()
    assert outside.read_text() == "x: 1\n"
    assert_clean_and_unpushed(hub, head)


@pytest.mark.parametrize("path", ["../x.yaml", "/etc/passwd", "a/../../x"])
def test_paths_leaving_the_clone_are_refused(tmp_path: Path, path: str):
    r = gitrepo.Repo("local", "main", tmp_path)
    with pytest.raises(PermanentError, match="not a path inside the repository"):
        r.write(path, "x")


def test_the_hubs_clone_is_its_own(tmp_path: Path):
    fleet = LocalFleet(tmp_path / "fleet")
    fleet.prepare()
    hub = gitrepo.Repo(fleet.git_url("mesh"), "main", tmp_path / "hub-clone")
    hub.ensure()
    assert (tmp_path / "hub-clone").stat().st_mode & 0o077 == 0


def test_reading_a_directory_or_a_missing_file_gives_none(tmp_path: Path):
    """``Repo.read`` is asked for paths that may be folders (a kustomization's resources): a
    directory is not a file's text, never an error (IsADirectoryError before the fix)."""
    r = gitrepo.Repo("local", "main", tmp_path)
    (tmp_path / "deploy" / "frontend").mkdir(parents=True)
    (tmp_path / "deploy" / "kustomization.yaml").write_text("resources: [frontend]\n")
    assert r.read("deploy/frontend") is None
    assert r.read("deploy/missing.yaml") is None
    assert r.read("deploy") is None
    assert r.read("deploy/kustomization.yaml") == "resources: [frontend]\n"
