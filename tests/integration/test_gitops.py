"""GitOps on real repos: concurrent humans, rejected pushes, credentials, signing, PR mode, history."""

from __future__ import annotations

import logging
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from federation import specfiles
from federation.core import spec as specs
from federation.core import steps
from federation.core.errors import TemporaryError
from federation.core.spec import GitAuth
from federation.core.state import Stage
from federation.core.weights import Subset
from federation.gitops import history
from federation.gitops import repo as gitrepo
from tests.integration.git_http import GitHTTPServer

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def seed(tmp: Path, name: str = "zone") -> Path:
    bare = tmp / f"{name}.git"
    gitrepo.init_bare_seeded(bare, ROOT / "clusters" / "vms")
    return bare


def step_edit(step: int):
    def edit(repo: gitrepo.Repo) -> list[str]:
        path = "frontend.yaml"
        text = repo.read(path) or ""
        new = specfiles.replace_mapping(text, ("spec", "serving"), {"v1": 10_000 - step * 100, "v2": step * 100})
        (repo.workdir / path).write_text(new)
        return [path]
    return edit


def message(step: int) -> str:
    record = steps.StepRecord("shop/frontend", step, Stage.ANALYSIS, step * 100,
                              ((Subset("vms", "v1"), 10_000 - step * 100), (Subset("vms", "v2"), step * 100)),
                              analysis=f"request-success-rate@global={99 + step / 100:.4g}:pass")
    return record.message("frontend", "v2")


def test_50_steps_with_concurrent_human_commits_lose_nothing(tmp_path: Path):
    bare = seed(tmp_path)
    hub = gitrepo.Repo(str(bare), "main", tmp_path / "hub")
    hub.ensure()
    human = tmp_path / "human"
    git("clone", "-q", str(bare), str(human))
    git("config", "user.name", "Alice", cwd=human)
    git("config", "user.email", "alice@example.com", cwd=human)
    stop = threading.Event()
    human_shas: list[str] = []

    def humans() -> None:
        n = 0
        while not stop.is_set() and n < 200:
            n += 1
            # A human edits the same file the hub edits (a comment line) and another file.
            # Each edit is new whatever the clone holds (after a lost race it is back at an older
            # note), and NOTES.md is added explicitly: there is always something to commit.
            path = human / "frontend.yaml"
            git("pull", "-q", "--rebase", cwd=human)
            text = path.read_text()
            path.write_text(re.sub(r"# frontend on the legacy VMs\.( note \d+\.)?",
                                   f"# frontend on the legacy VMs. note {n}.", text, count=1))
            (human / "NOTES.md").write_text(f"edit {n}\n")
            git("add", "frontend.yaml", "NOTES.md", cwd=human)
            git("commit", "-qm", f"human edit {n}", cwd=human)
            try:
                git("push", "-q", "origin", "HEAD:main", cwd=human)
                human_shas.append(git("rev-parse", "HEAD", cwd=human).strip())
            except subprocess.CalledProcessError:
                git("reset", "-q", "--hard", "origin/main", cwd=human)  # lost the race: try again

    t = threading.Thread(target=humans)
    t.start()
    try:
        for step in range(1, 51):
            # The hub's optimistic push (no fetch) is quicker than a human's pull, commit and push:
            # every fifth step it lets a human commit land first (polled, with a deadline), so that
            # humans do commit between the hub's steps whatever the machine's load.
            deadline = time.monotonic() + 30
            while step % 5 == 0 and len(human_shas) < step // 5 and time.monotonic() < deadline and t.is_alive():
                time.sleep(0.01)
            assert hub.commit_and_push(step_edit(step), message(step), idempotency=("shop/frontend", step), backoff=0.01,
                                       attempts=20)
    finally:
        stop.set()
        t.join(timeout=60)
    final = git("--git-dir", str(bare), "rev-parse", "main").strip()
    for sha in human_shas:  # every human commit is an ancestor of main: nothing lost, nothing forced
        subprocess.run(["git", "--git-dir", str(bare), "merge-base", "--is-ancestor", sha, final], check=True)
    log = git("--git-dir", str(bare), "log", "--format=%s", "main").splitlines()
    steps = [s for s in log if s.startswith("frontend: canary")]
    assert len(steps) == 50 and len(set(steps)) == 50
    assert len(human_shas) > 5
    text = git("--git-dir", str(bare), "show", "main:frontend.yaml")
    assert "note " in text and "v2: 5000" in text  # the human's comment edit and the hub's last weight both there
    print(f"50 steps, {len(human_shas)} human commits pushed meanwhile, {hub.rejections} hub pushes rejected and retried")


def test_comments_and_formatting_survive_edits(tmp_path: Path):
    bare = seed(tmp_path)
    hub = gitrepo.Repo(str(bare), "main", tmp_path / "hub")
    hub.ensure()
    before = (ROOT / "clusters" / "vms" / "frontend.yaml").read_text()
    hub.commit_and_push(step_edit(7), message(7))
    after = git("--git-dir", str(bare), "show", "main:frontend.yaml")
    assert after.replace("    v1: 9300\n    v2: 700\n", "    v1: 10000\n") == before


def reject_hook(bare: Path, times: int) -> Path:
    counter = bare / "rejections-left"
    counter.write_text(str(times))
    hook = bare / "hooks" / "pre-receive"
    hook.write_text(f"#!/bin/sh\nn=$(cat {counter})\nif [ \"$n\" -gt 0 ]; then echo $((n-1)) > {counter}; "
                    "echo 'protected: try again' >&2; exit 1; fi\nexit 0\n")
    hook.chmod(0o755)
    return counter


def test_rejected_push_is_retried_then_surfaced(tmp_path: Path):
    bare = seed(tmp_path)
    hub = gitrepo.Repo(str(bare), "main", tmp_path / "hub")
    hub.ensure()
    reject_hook(bare, 2)
    assert hub.commit_and_push(step_edit(1), message(1), backoff=0.01)
    assert hub.rejections == 2
    reject_hook(bare, 100)
    with pytest.raises(TemporaryError, match="rejected 3 times"):
        hub.commit_and_push(step_edit(2), message(2), backoff=0.01, attempts=3)
    # Nothing half-applied: the remote still ends at step 1.
    assert "(step 1)" in git("--git-dir", str(bare), "log", "-1", "--format=%s", "main")


def test_credentials_never_reach_logs_commits_or_config(tmp_path: Path, caplog, monkeypatch):
    token = "s3cr3t-token-value-0123456789"
    monkeypatch.setenv("FED_TEST_TOKEN", token)
    root = tmp_path / "srv"
    root.mkdir()
    gitrepo.init_bare_seeded(root / "zone.git", ROOT / "clusters" / "vms")
    with (root / "zone.git" / "config").open("a") as f:
        f.write("[http]\n\treceivepack = true\n")
    caplog.set_level(logging.DEBUG)
    with GitHTTPServer(root, "hub", token) as srv:
        creds = gitrepo.Credentials(GitAuth(username="hub", token_env="FED_TEST_TOKEN"))
        hub = gitrepo.Repo(f"{srv.url}/zone.git", "main", tmp_path / "hub", creds)
        hub.ensure()
        hub.commit_and_push(step_edit(3), message(3))
        assert any(a.startswith("Basic ") for a in srv.seen_auth)  # the token was really used...
        # ...and a wrong token fails with an error that does not echo the secret.
        monkeypatch.setenv("FED_TEST_TOKEN", "wrong-" + token)
        bad = gitrepo.Repo(f"{srv.url}/zone.git", "main", tmp_path / "bad", creds)
        with pytest.raises(TemporaryError) as err:
            bad.ensure()
        assert token not in str(err.value)
    everything = [caplog.text, (tmp_path / "hub" / ".git" / "config").read_text(),
                  git("--git-dir", str(root / "zone.git"), "log", "-p", "--all")]
    for text in everything:
        assert token not in text
    assert not list(tmp_path.rglob("askpass"))  # the helper script is gone with its temp dir


def test_signed_commits_verify(tmp_path: Path):
    key = tmp_path / "signing_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    bare = seed(tmp_path)
    hub = gitrepo.Repo(str(bare), "main", tmp_path / "hub", signing_key=str(key))
    hub.ensure()
    sha = hub.commit_and_push(step_edit(4), message(4))
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"{gitrepo.AUTHOR_EMAIL} {(tmp_path / 'signing_key.pub').read_text()}")
    out = subprocess.run(["git", "-c", f"gpg.ssh.allowedSignersFile={signers}", "verify-commit", sha],
                         cwd=tmp_path / "hub", capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "Good" in out.stderr


def test_openpgp_signed_commits_verify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("GNUPGHOME", str(home))
    # gpg starts a gpg-agent daemon for this home: stop it through its own socket when the test ends.
    request.addfinalizer(lambda: subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                                                capture_output=True, timeout=30))
    subprocess.run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key",
                    f"{gitrepo.AUTHOR_NAME} <{gitrepo.AUTHOR_EMAIL}>", "ed25519", "sign", "never"],
                   check=True, capture_output=True)
    listing = subprocess.run(["gpg", "--batch", "--with-colons", "--list-secret-keys"], check=True, capture_output=True,
                             text=True).stdout
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    bare = seed(tmp_path)
    src = specs.GitSource.model_validate({"url": str(bare), "signing": {"key": fingerprint, "format": "openpgp"}})
    assert src.signing is not None
    hub = gitrepo.Repo(src.url, "main", tmp_path / "hub", signing_key=src.signing.key, signing_format=src.signing.format.value)
    hub.ensure()
    sha = hub.commit_and_push(step_edit(4), message(4))
    out = subprocess.run(["git", "verify-commit", "--raw", sha], cwd=tmp_path / "hub", capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f"VALIDSIG {fingerprint}" in out.stderr
    unsigned = subprocess.run(["git", "verify-commit", "HEAD~1"], cwd=tmp_path / "hub", capture_output=True, text=True)
    assert unsigned.returncode != 0  # the seed commit is not signed: verification can fail


@pytest.fixture
def git_sshd(tmp_path: Path):
    """OpenSSH sshd on loopback whose only authorised key may run git (git-shell), nothing else."""
    from federation.demo.procs import Supervisor
    from tests.integration.sshd import keygen, start_sshd

    client_pub = keygen(tmp_path / "client_key")
    procs = Supervisor(tmp_path / "logs")
    try:
        port = start_sshd(tmp_path, procs, f'command="git-shell -c \\"$SSH_ORIGINAL_COMMAND\\"",restrict {client_pub}\n')
        yield tmp_path, port
    finally:
        procs.stop_all()


def test_ssh_remote_with_a_pinned_host_key(git_sshd):
    tmp, port = git_sshd
    bare = seed(tmp)
    url = f"ssh://root@127.0.0.1:{port}{bare}"
    auth = specs.GitAuth(ssh_key_file=str(tmp / "client_key"), ssh_known_hosts=str(tmp / "known_hosts"))
    hub = gitrepo.Repo(url, "main", tmp / "hub", gitrepo.Credentials(auth))
    hub.ensure()
    sha = hub.commit_and_push(step_edit(3), message(3))
    assert sha and git("--git-dir", str(bare), "rev-parse", "main").strip() == sha
    assert gitrepo.reachable(url, "main", gitrepo.Credentials(auth)) is None
    # The same server under a host key we did not pin: refused, nothing cloned.
    other = tmp / "other_known_hosts"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / "impostor")], check=True)
    kind, key = (tmp / "impostor.pub").read_text().split()[:2]
    other.write_text(f"[127.0.0.1]:{port} {kind} {key}\n")
    bad = gitrepo.Repo(url, "main", tmp / "bad", gitrepo.Credentials(
        specs.GitAuth(ssh_key_file=str(tmp / "client_key"), ssh_known_hosts=str(other))))
    with pytest.raises(TemporaryError, match=r"(?i)host key"):
        bad.ensure()
    assert not (tmp / "bad" / ".git").exists()
    # The key opens git only: no shell.
    shell = subprocess.run(["ssh", "-i", str(tmp / "client_key"), "-p", str(port), "-o", "BatchMode=yes",
                            "-o", f"UserKnownHostsFile={tmp / 'known_hosts'}", "-o", "StrictHostKeyChecking=yes",
                            "root@127.0.0.1", "id"], capture_output=True, text=True, timeout=30)
    assert shell.returncode != 0 and "uid=" not in shell.stdout


def test_pull_request_mode_pushes_a_branch_and_waits_for_merge(tmp_path: Path):
    bare = seed(tmp_path)
    reject_hook(bare, 0)
    hub = gitrepo.Repo(str(bare), "main", tmp_path / "hub")
    hub.ensure()
    sha = hub.commit_and_push(step_edit(5), message(5), branch="federation/shop-frontend/step-5")
    assert sha and not hub.merged(sha)
    assert "(step 5)" not in git("--git-dir", str(bare), "log", "-1", "--format=%s", "main")
    reviewer = tmp_path / "reviewer"
    git("clone", "-q", str(bare), str(reviewer))
    git("merge", "-q", "--ff-only", "origin/federation/shop-frontend/step-5", cwd=reviewer)
    git("push", "-q", "origin", "HEAD:main", cwd=reviewer)
    assert hub.merged(sha)


def test_history_round_trips_what_was_written(tmp_path: Path):
    zone_bare, mesh_bare = seed(tmp_path, "zone"), seed(tmp_path, "mesh")
    repos = {"vms": gitrepo.Repo(str(zone_bare), "main", tmp_path / "z"),
             "mesh": gitrepo.Repo(str(mesh_bare), "main", tmp_path / "m")}
    for r in repos.values():
        r.ensure()
    for step in (1, 2, 3):
        for r in repos.values():
            r.commit_and_push(step_edit(step), message(step), idempotency=("shop/frontend", step))
    for r in repos.values():  # crash recovery: the same step again writes nothing new
        assert r.commit_and_push(step_edit(3), message(3), idempotency=("shop/frontend", 3)) == r.head()
    records = history.collect(repos, "frontend")
    assert [h.record.step for h in records] == [1, 2, 3]
    assert records[1].record.weight_map == {"vms/v1": 9800, "vms/v2": 200} and records[1].record.canary_weight == 200
    assert set(records[2].commits) == {"vms", "mesh"}
    assert records[0].record.analysis == "request-success-rate@global=99.01:pass"
    assert all(h.author == gitrepo.AUTHOR_NAME for h in records)


def test_a_version_bump_in_a_zone_repo_is_a_new_canary_revision(tmp_path: Path):
    """The hub reads the canary version's definition in each canary zone's repo: an image/artifact
    bump there changes the rollout's identity (which restarts or starts it); other edits do not."""
    import asyncio

    from federation import specfiles
    from federation.core import spec as specs
    from federation.core.decide import target_of
    from federation.demo import run as demo_run
    from federation.demo.fleet import LocalFleet
    from federation.hub import parts as hub_parts

    fleet = LocalFleet(tmp_path / "fleet")
    fleet.prepare()
    demo_run.release(fleet, demo_run.canary_doc(demo_run.Pace.fast(), ("v2", ["eks", "onprem"]), ("v3", ["eks"])),
                     "release v3")
    f = specfiles.load_one(fleet.fleet_file, specs.Fleet)
    human = gitrepo.Repo(fleet.git_url("eks"), "main", tmp_path / "human-eks")
    human.ensure()

    def human_edit(old: str, new: str, message: str, path: str = "frontend.yaml") -> None:
        def edit(repo: gitrepo.Repo) -> list[str]:
            p = repo.workdir / path
            text = p.read_text()
            assert old in text
            p.write_text(text.replace(old, new, 1))
            return [path]

        assert human.commit_and_push(edit, message, author="Dev <dev@localhost>")

    async def revision() -> str:
        await ad.sync()
        c = (await ad.canaries())["shop/frontend"][1]
        assert c is not None
        return target_of(c.spec)

    ad = hub_parts.build(f, tmp_path / "hub")
    try:
        first = asyncio.run(revision())
        assert "#" in first and first.startswith("v2@eks,onprem->v3@eks#")
        # A comment and the primary's definition are not the canary: same revision.
        human_edit("  service: frontend\n", "  service: frontend  # owned by team shop\n", "comment")
        human_edit("frontend:2.0.0", "frontend:2.0.1", "frontend v2: image 2.0.1")  # v2 is the primary
        assert asyncio.run(revision()) == first
        # The fix of the faulty build: v3's artifact changes (here its env), same version name.
        human_edit('FAULT_RATE: "0.3"', 'FAULT_RATE: "0.0"', "frontend v3: fixed build")
        second = asyncio.run(revision())
        assert second != first and second.split("#")[0] == first.split("#")[0]
        # v3's Deployment is the team's template (workloads/frontend-v3.yaml): a new image tag there,
        # and nothing in the ZoneRelease, is a new revision (the pod template is in the checksum) ...
        human_edit("frontend:3.0.0", "frontend:3.0.1", "frontend v3: image 3.0.1", "workloads/frontend-v3.yaml")
        third = asyncio.run(revision())
        assert third not in (first, second) and third.split("#")[0] == first.split("#")[0]
        # ... its replicas are not (outside the pod template, as for Flagger).
        human_edit("replicas: 2", "replicas: 3", "frontend v3: 3 replicas", "workloads/frontend-v3.yaml")
        assert asyncio.run(revision()) == third
    finally:
        asyncio.run(ad.close())


def test_locks_left_in_the_hubs_clone_by_a_killed_hub_do_not_stop_the_next_one(tmp_path: Path):
    """Found by the chaos soak: a hub SIGKILLed during `git reset` left .git/HEAD.lock in its own
    clone; the restarted hub's every fetch+reset then failed ("cannot lock ref 'HEAD'") and
    discovery failed forever. Locks in the hub's own clone are stale when it opens the clone."""
    bare = seed(tmp_path)
    first = gitrepo.Repo(str(bare), "main", tmp_path / "clone")
    first.ensure()
    assert first.commit_and_push(step_edit(1), message(1))
    git_dir = tmp_path / "clone" / ".git"
    stale = [git_dir / "HEAD.lock", git_dir / "index.lock", git_dir / "refs" / "heads" / "main.lock",
             git_dir / "packed-refs.lock"]
    for lock in stale:
        lock.write_text("left by a killed git\n")
    restarted = gitrepo.Repo(str(bare), "main", tmp_path / "clone")  # the next hub, same state dir
    restarted.ensure()
    restarted.ensure()  # the first sync (fetch + reset) runs here
    assert restarted.commit_and_push(step_edit(2), message(2))
    assert not [lock for lock in stale if lock.exists()]
    assert git("log", "-1", "--format=%s", cwd=tmp_path / "clone").startswith("frontend:")


def count_fetches(clone: Path, tmp: Path) -> Path:
    """Every fetch of ``clone`` from its origin runs this upload-pack, which counts itself."""
    counter = tmp / "fetches"
    counter.write_text("")
    script = tmp / "upload-pack"
    script.write_text(f'#!/bin/sh\necho fetch >> {counter}\nexec git-upload-pack "$@"\n')
    script.chmod(0o755)
    git("config", "remote.origin.uploadpack", str(script), cwd=clone)
    return counter


def human_commit(tmp: Path, bare: Path, path: str, text: str, name: str = "human") -> str:
    """A person's commit pushed from a clone of their own; its sha."""
    work = tmp / name
    if not work.exists():
        git("clone", "-q", str(bare), str(work))
        git("config", "user.name", "Alice", cwd=work)
        git("config", "user.email", "alice@example.com", cwd=work)
    git("pull", "-q", "--rebase", cwd=work)
    (work / path).write_text(text)
    git("add", path, cwd=work)
    git("commit", "-qm", f"human edit of {path}", cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    return git("rev-parse", "HEAD", cwd=work).strip()


def test_steps_push_on_the_clones_head_and_a_human_push_between_them_is_rebased_over(tmp_path: Path):
    """The hub's clone stands at the remote's head after its own push: the next step is committed
    and pushed there without a fetch. A human commit pushed in between refuses that push; the hub
    then fetches, resets, re-runs the edit on the human's content and pushes again: nothing lost."""
    bare = seed(tmp_path)
    hub = gitrepo.Repo(str(bare), "main", tmp_path / "hub")
    hub.ensure()
    fetches = count_fetches(tmp_path / "hub", tmp_path)
    hub.ensure()  # a sync: the clone is now known to stand at the remote's head
    assert fetches.read_text().count("fetch") == 1
    for step in (1, 2, 3):
        assert hub.commit_and_push(step_edit(step), message(step), idempotency=("shop/frontend", step))
    assert fetches.read_text().count("fetch") == 1 and hub.rejections == 0  # three steps, no fetch
    text = git("--git-dir", str(bare), "show", "main:frontend.yaml")
    ours = human_commit(tmp_path, bare, "frontend.yaml", text.replace("# frontend on the legacy VMs.",
                                                                      "# frontend on the legacy VMs. human note.", 1))
    sha = hub.commit_and_push(step_edit(4), message(4), idempotency=("shop/frontend", 4))
    assert sha == git("--git-dir", str(bare), "rev-parse", "main").strip()
    assert hub.rejections == 1 and fetches.read_text().count("fetch") == 2  # refused once, fetched once
    subprocess.run(["git", "--git-dir", str(bare), "merge-base", "--is-ancestor", ours, sha], check=True)
    text = git("--git-dir", str(bare), "show", "main:frontend.yaml")
    assert "human note." in text and "v2: 400" in text  # the edit re-ran on the human's content
    subjects = git("--git-dir", str(bare), "log", "--format=%s", "main").splitlines()
    assert [s.rsplit(" ", 2)[-2:] for s in subjects if "(step" in s] == [["(step", f"{n})"] for n in (4, 3, 2, 1)]


def test_a_step_already_on_the_remote_is_found_not_committed_twice(tmp_path: Path):
    """Another writer (a second hub replica, or this hub's push that landed but whose answer was
    lost) pushed step 2 after this clone's last push: the optimistic push of step 2 is refused, and
    the step is then found on the fetched head and returned, never committed a second time."""
    bare = seed(tmp_path)
    hub = gitrepo.Repo(str(bare), "main", tmp_path / "hub")
    hub.ensure()
    assert hub.commit_and_push(step_edit(1), message(1), idempotency=("shop/frontend", 1))
    other = gitrepo.Repo(str(bare), "main", tmp_path / "other")
    other.ensure()
    # (Another author: the same tree, parent, message and second would be the very same commit.)
    theirs = other.commit_and_push(step_edit(2), message(2), idempotency=("shop/frontend", 2),
                                   author="federation-hub <replica-2@localhost>")
    assert hub.commit_and_push(step_edit(2), message(2), idempotency=("shop/frontend", 2)) == theirs
    assert hub.rejections == 1  # its optimistic push was refused; the fetched head held the step
    assert git("--git-dir", str(bare), "rev-parse", "main").strip() == theirs
    assert hub.head() == theirs  # the clone stands at the remote's head again
    subjects = git("--git-dir", str(bare), "log", "--format=%s", "main").splitlines()
    assert len([s for s in subjects if "(step 2)" in s]) == 1
    # Step 3 by the other writer with other weights (its own decision): refused as a clash on the
    # fetched head, never taken as done and never committed beside it.
    other_step3 = steps.StepRecord("shop/frontend", 3, Stage.ANALYSIS, 3000,
                                   ((Subset("vms", "v1"), 7000), (Subset("vms", "v2"), 3000)))
    assert other.commit_and_push(step_edit(30), other_step3.message("frontend", "v2"), idempotency=("shop/frontend", 3))
    with pytest.raises(gitrepo.PermanentError, match="already committed"):
        hub.commit_and_push(step_edit(3), message(3), idempotency=("shop/frontend", 3),
                            expect={steps.CANARY_WEIGHT: "300"})
    assert len([s for s in git("--git-dir", str(bare), "log", "--format=%s", "main").splitlines() if "(step 3)" in s]) == 1


def test_nothing_to_change_is_judged_on_a_fetched_head(tmp_path: Path):
    """The clone's head already holds what the edit writes, but a human changed that file on the
    remote since: the hub fetches before it concludes there is nothing to commit."""
    bare = seed(tmp_path)
    hub = gitrepo.Repo(str(bare), "main", tmp_path / "hub")
    hub.ensure()
    assert hub.commit_and_push(step_edit(1), message(1))
    text = git("--git-dir", str(bare), "show", "main:frontend.yaml")
    human_commit(tmp_path, bare, "frontend.yaml", text.replace("v2: 100", "v2: 5000").replace("v1: 9900", "v1: 5000"))
    sha = hub.commit_and_push(step_edit(1), message(1))
    assert sha and git("--git-dir", str(bare), "rev-parse", "main").strip() == sha
    assert "v2: 100\n" in git("--git-dir", str(bare), "show", "main:frontend.yaml")
    assert hub.commit_and_push(step_edit(1), message(1)) is None  # now truly nothing to change


def test_a_file_written_outside_a_commit_is_not_the_next_steps_base(tmp_path: Path):
    """``Repo.write`` outside ``commit_and_push`` leaves the clone off the remote's head: the next
    step starts from a fetch and reset, so its edit reads what Git holds."""
    bare = seed(tmp_path)
    hub = gitrepo.Repo(str(bare), "main", tmp_path / "hub")
    hub.ensure()
    assert hub.commit_and_push(step_edit(1), message(1))
    hub.write("frontend.yaml", "not: [what git holds\n")
    assert hub.commit_and_push(step_edit(2), message(2))
    assert "v2: 200" in git("--git-dir", str(bare), "show", "main:frontend.yaml")


def test_a_new_file_and_a_removed_file_are_committed(tmp_path: Path):
    """``commit -- paths`` takes modified and removed files; a file new to Git is added first."""
    bare = seed(tmp_path)
    hub = gitrepo.Repo(str(bare), "main", tmp_path / "hub")
    hub.ensure()

    def add(repo: gitrepo.Repo) -> list[str]:
        repo.write("deploy/new.yaml", "a: 1\n")
        return ["deploy/new.yaml"]

    def remove(repo: gitrepo.Repo) -> list[str]:
        (repo.workdir / "deploy" / "new.yaml").unlink()
        return ["deploy/new.yaml"]

    added = hub.commit_and_push(add, "add")
    assert added and "deploy/new.yaml" in hub.changed(added)
    removed = hub.commit_and_push(remove, "remove")
    assert removed and removed != added and hub.changed(removed) == ["deploy/new.yaml"]
    assert "deploy/new.yaml" not in git("--git-dir", str(bare), "ls-tree", "-r", "--name-only", "main")
    assert hub.commit_and_push(lambda r: ["frontend.yaml"], "nothing") is None


def test_a_step_whose_push_failed_leaves_no_commit_in_the_clone(tmp_path: Path):
    """A push that fails outright (the remote away) or is refused for good leaves the clone at the
    commit it held: nothing reads the unpushed step as if it were in Git. (The 30-minute soak: the
    mesh remote reset the push of a finalising step; a restarted worker adopted that step from the
    clone's history, it was never pushed, and the rollout waited for it forever.)"""
    bare = seed(tmp_path)
    hub = gitrepo.Repo(str(bare), "main", tmp_path / "hub")
    hub.ensure()
    first = hub.commit_and_push(step_edit(1), message(1), idempotency=("shop/frontend", 1))
    assert first
    away = tmp_path / "away.git"
    bare.rename(away)  # the remote is unreachable
    try:
        with pytest.raises(TemporaryError):
            hub.commit_and_push(step_edit(2), message(2), idempotency=("shop/frontend", 2))
        assert hub.head() == first
        assert hub.find_step("shop/frontend", 2) is None
        assert hub.last_step("shop/frontend").sha == first  # type: ignore[union-attr]
    finally:
        away.rename(bare)
    reject_hook(bare, 100)  # refused for good: the same
    with pytest.raises(TemporaryError, match="rejected 2 times"):
        hub.commit_and_push(step_edit(2), message(2), idempotency=("shop/frontend", 2), backoff=0.01, attempts=2)
    assert hub.head() == first and hub.find_step("shop/frontend", 2) is None
    reject_hook(bare, 0)
    second = hub.commit_and_push(step_edit(2), message(2), idempotency=("shop/frontend", 2))
    assert second and second != first
    assert "(step 2)" in git("--git-dir", str(bare), "log", "-1", "--format=%s", "main")
