"""The one owner of GitPython: clones, fetches, reads, commits and pushes with retry; history.

Everything goes through ``repo.git.*`` (the index API changes the process cwd, unsafe in threads).
A push is checked with ``raise_if_error()``; a non-fast-forward is fetched, rebased and retried
with backoff, never forced, so a human commit made during a rollout is never lost. Credentials
come from the environment or a file into Git's askpass, never into a URL, a log or a commit.
Callers: ``gitops`` (the async facade and ZoneRelease files), ``demo`` (seeding bare repos).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shlex
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import git
from git.exc import GitCommandError
from git.refs import SymbolicReference

from federation import files
from federation.core import steps
from federation.core.errors import PermanentError, TemporaryError
from federation.core.spec import GitAuth

log = logging.getLogger("federation.gitops")

AUTHOR_NAME = "federation-hub"
AUTHOR_EMAIL = "federation-hub@localhost"


def _redact(text: str, secrets: list[str]) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text


def ssh_command(auth: GitAuth) -> str:
    """Git's ssh for an SSH remote: our key only, no prompt, and the host key checked strictly
    against the pinned file when one is given (an unknown or changed key fails the command)."""
    parts = ["ssh", "-o", "BatchMode=yes"]
    if auth.ssh_key_file:
        parts += ["-i", auth.ssh_key_file, "-o", "IdentitiesOnly=yes"]
    if auth.ssh_known_hosts:
        parts += ["-o", f"UserKnownHostsFile={auth.ssh_known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
                  "-o", "StrictHostKeyChecking=yes"]
    return shlex.join(parts)


@dataclass
class Credentials:
    """Where a repo's secret comes from; the value is read at use time and never stored here."""

    auth: GitAuth | None = None

    def token(self) -> str | None:
        if self.auth is None:
            return None
        if self.auth.token_env:
            return os.environ.get(self.auth.token_env) or None
        if self.auth.token_file:
            try:
                return Path(self.auth.token_file).read_text().strip() or None
            except OSError as exc:
                raise PermanentError(f"cannot read Git token file {self.auth.token_file}: {exc.strerror}") from None
        return None

    @contextlib.contextmanager
    def environment(self) -> Iterator[dict[str, str]]:
        """Env vars for one git command: an askpass script reading the token from our env."""
        env: dict[str, str] = {"GIT_TERMINAL_PROMPT": "0"}
        if self.auth is not None and (self.auth.ssh_key_file or self.auth.ssh_known_hosts):
            env["GIT_SSH_COMMAND"] = ssh_command(self.auth)
        token = self.token()
        if token is None:
            yield env
            return
        with tempfile.TemporaryDirectory(prefix="fed-askpass-") as d:
            script = Path(d) / "askpass"
            user = self.auth.username if self.auth and self.auth.username else "x-access-token"
            # The script prints the username or the token from the environment; the token is
            # never written to disk nor put on a command line.
            script.write_text('#!/bin/sh\ncase "$1" in Username*) printf "%s\\n" "$FED_GIT_USER";; '
                              '*) printf "%s\\n" "$FED_GIT_TOKEN";; esac\n')
            script.chmod(stat.S_IRWXU)
            env.update({"GIT_ASKPASS": str(script), "FED_GIT_USER": user, "FED_GIT_TOKEN": token})
            yield env

    def secrets(self) -> list[str]:
        try:
            t = self.token()
        except PermanentError:
            return []
        return [t] if t else []


class PathRefused(PermanentError):
    """A path the hub reads or writes in a clone goes through a symlink (or leaves the clone)."""

    def __init__(self, url: str, path: str) -> None:
        super().__init__(f"{url}: refusing {path}: it is a symlink (or goes through one); the hub reads and "
                         "writes only regular files inside its clone")
        self.path = path


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    author: str
    time: float
    subject: str
    trailers: dict[str, str]  # ours (``Federation-*``), full keys
    files: tuple[str, ...] = ()

    @property
    def record(self) -> steps.StepRecord | None:
        """The step this commit records, if it is one of the hub's step commits."""
        return steps.StepRecord.from_trailers(self.trailers)


@dataclass
class Repo:
    """A working clone of one remote branch, used from worker threads under its own lock."""

    url: str
    branch: str
    workdir: Path
    credentials: Credentials = field(default_factory=Credentials)
    signing_key: str | None = None  # commits are signed: an SSH private key path, or an OpenPGP key id
    signing_format: str = "ssh"  # "ssh" or "openpgp" (git's gpg.format)
    lock: threading.Lock = field(default_factory=threading.Lock)
    rejections: int = 0  # pushes the remote refused (each one fetched, rebased and retried)
    _repo: git.Repo | None = None
    # The clone stands clean at the remote branch's head as last fetched or pushed (nothing of ours
    # uncommitted or unpushed in it): the next commit may be optimistic (``commit_and_push``).
    _fresh: bool = False

    # -- plumbing --------------------------------------------------------------------------

    def _git(self) -> git.Repo:
        if self._repo is None:
            raise PermanentError(f"{self.url}: not cloned yet")
        return self._repo

    def _run(self, what: str, fn: Callable[[], object]) -> object:
        try:
            with self.credentials.environment() as env:
                g = self._git() if self._repo is not None else None
                if g is not None:
                    with g.git.custom_environment(**env):
                        return fn()
                return fn()
        except GitCommandError as exc:
            msg = _redact(str(exc.stderr or exc).strip(), self.credentials.secrets())
            raise TemporaryError(f"git {what} on {self.url} failed: {msg}") from None

    def ensure(self) -> None:
        """Clone once; afterwards fetch. Safe to call on every tick."""
        with self.lock:
            if self._repo is None and (self.workdir / ".git").exists():
                # This clone is ours alone (the state dir's lock keeps other hubs out) and nothing of
                # ours runs in it yet: a lock left by a git killed mid-command with the hub (index,
                # HEAD, a ref, packed-refs, config) is stale, and would fail every later command.
                git_dir = self.workdir / ".git"
                for stale in [*git_dir.glob("*.lock"), *git_dir.glob("refs/**/*.lock"), *git_dir.glob("logs/**/*.lock")]:
                    stale.unlink(missing_ok=True)
                self._repo = git.Repo(self.workdir)
            if self._repo is None:
                self.workdir.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with self.credentials.environment() as env:
                        self._repo = git.Repo.clone_from(self.url, self.workdir, branch=self.branch, env=env)
                except GitCommandError as exc:
                    msg = _redact(str(exc.stderr or exc).strip(), self.credentials.secrets())
                    raise TemporaryError(f"git clone of {self.url} failed: {msg}") from None
                os.chmod(self.workdir, 0o700)  # the hub's clone is its own: nobody else reads it
                g = self._repo.git
                g.config("user.name", AUTHOR_NAME)
                g.config("user.email", AUTHOR_EMAIL)
                if self.signing_key:
                    g.config("gpg.format", self.signing_format)
                    g.config("user.signingkey", self.signing_key)
            else:
                self._sync()

    def _sync(self) -> None:
        g = self._git().git
        self._fresh = False
        self._run("fetch", lambda: g.fetch("origin", self.branch))
        self._run("reset", lambda: g.reset("--hard", f"origin/{self.branch}"))
        self._fresh = True

    def head(self) -> str:
        return str(self._git().git.rev_parse("HEAD"))

    # Files in the clone are opened component by component from the clone's root with
    # O_NOFOLLOW: a symlink anywhere on the way (committed by anyone who can push) is refused, so
    # the hub never reads or writes outside its clone.

    def _parts(self, path: str) -> list[str]:
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if not parts or ".." in parts or path.startswith("/") or "\x00" in path:
            raise PermanentError(f"{self.url}: {path!r} is not a path inside the repository")
        return parts

    def _open_dir(self, parts: list[str], create: bool) -> int:
        """A descriptor of the directory ``parts`` inside the clone, no symlink followed."""
        fd = os.open(self.workdir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for i, name in enumerate(parts):
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, 0o755, dir_fd=fd)
                try:
                    nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise PathRefused(self.url, "/".join(parts[:i + 1])) from None
                    raise
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def read(self, path: str, limit: int = 1024 * 1024 + 1) -> str | None:
        """The text of a file in the clone (at most ``limit`` bytes), None when there is none."""
        parts = self._parts(path)
        try:
            dfd = self._open_dir(parts[:-1], create=False)
        except FileNotFoundError:
            return None
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise PathRefused(self.url, path) from None
            raise PermanentError(f"{self.url}: cannot read {path}: {exc.strerror}") from None
        finally:
            os.close(dfd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a directory (or a fifo): not a file's text
            os.close(fd)
            return None
        with os.fdopen(fd, "rb") as f:
            return f.read(limit).decode("utf-8", errors="replace")

    def read_at(self, rev: str, path: str, limit: int = 1024 * 1024) -> str | None:
        """The text of ``path`` as commit ``rev`` holds it, None when it held no such file or a
        larger one than ``limit`` bytes (a blob from history is as untrusted as the worktree)."""
        g = self._git().git
        try:
            if g.cat_file("-t", f"{rev}:{path}").strip() != "blob" or int(g.cat_file("-s", f"{rev}:{path}")) > limit:
                return None
            return str(g.cat_file("blob", f"{rev}:{path}", stdout_as_string=False).decode("utf-8", errors="replace"))
        except GitCommandError:
            return None

    def write(self, path: str, text: str) -> None:
        """Replace a file in the clone; a symlink at ``path`` or on the way to it is refused
        (``PathRefused`` naming it) before anything is written."""
        parts = self._parts(path)
        self._fresh = False  # a change in the worktree: the next commit starts from a fetch and reset
        dfd = self._open_dir(parts[:-1], create=True)
        try:
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISLNK(os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False).st_mode):
                    raise PathRefused(self.url, path)
            try:
                # Renamed over it: a reader (discovery, a zone's converge) never sees half a file.
                files.replace_at(dfd, parts[-1], text.encode("utf-8"))
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise PathRefused(self.url, path) from None
                raise PermanentError(f"{self.url}: cannot write {path}: {exc.strerror}") from None
        finally:
            os.close(dfd)

    def files(self, under: str, suffixes: tuple[str, ...] = (".yaml", ".yml")) -> list[str]:
        """Regular files under ``under`` (symlinks, and directories reached through one, skipped)."""
        root = self.workdir / under
        if under not in ("", "."):
            try:
                os.close(self._open_dir(self._parts(under), create=False))
            except (OSError, PermanentError):
                return []
        elif not self.workdir.is_dir():
            return []
        out = []
        for top, dirs, names in os.walk(root, followlinks=False):
            dirs[:] = sorted(d for d in dirs if d != ".git" and not os.path.islink(os.path.join(top, d)))
            for n in names:
                p = Path(top) / n
                if p.suffix in suffixes and not p.is_symlink() and p.is_file():
                    out.append(str(p.relative_to(self.workdir)))
        return sorted(out)

    # -- writing ---------------------------------------------------------------------------

    def find_step(self, rollout: str, step: int, depth: int = 50,
                  expect: dict[str, str] | None = None) -> str | None:
        """The commit already carrying (rollout, step) among recent history, if any.

        With ``expect``, that commit's trailers must agree (same stage, same weights): a step
        number reused for different weights is an error, never silently taken as done.
        """
        for c in self.log(depth):
            r = c.record
            if r is not None and r.rollout == rollout and r.step == step:
                clash = {k: (v, c.trailers.get(k)) for k, v in (expect or {}).items() if c.trailers.get(k) != v}
                if clash:
                    raise PermanentError(f"{self.url}: step {step} of {rollout} is already committed ({c.sha[:8]}) "
                                         f"with other values {clash}; the hub must recover from Git first")
                return c.sha
        return None

    def last_step(self, rollout: str, depth: int = 200) -> CommitInfo | None:
        """The newest commit of ``rollout`` (the highest step) in recent history."""
        best: tuple[int, CommitInfo] | None = None
        for c in self.log(depth):
            r = c.record
            if r is not None and r.rollout == rollout and (best is None or r.step > best[0]):
                best = (r.step, c)
        return best[1] if best else None

    def commit_and_push(self, edit: Callable[[Repo], list[str]], message: str, *, attempts: int = 5,
                        backoff: float = 0.2, idempotency: tuple[str, int] | None = None,
                        author: str = f"{AUTHOR_NAME} <{AUTHOR_EMAIL}>", branch: str | None = None,
                        expect: dict[str, str] | None = None) -> str | None:
        """Apply ``edit`` (returns changed paths), commit, push; on rejection rebase and retry.

        ``edit`` is re-run on the fresh head after a rejected push, so a file a human changed
        underneath is re-rendered from its new content. With ``branch`` (pull-request mode) the
        commit goes to that branch instead, for a human or a bot to merge; see ``merged``. Returns the pushed commit, or None when
        there was nothing to change. With ``idempotency`` (rollout, step) an existing commit for
        that step is returned instead of writing a second one (crash recovery).

        Optimistic when the clone is known to stand clean at the remote branch as last fetched or
        pushed (``_fresh``): the first attempt edits and pushes on that head without a fetch. The
        push only lands as a fast-forward of that head, whose history is what ``find_step`` read:
        a step commit already on the remote is either in it (found, returned) or newer, and then the
        push is refused and the next attempt fetches, resets and checks again. "Nothing to change"
        is only believed on a fetched head. A pull-request branch (force-pushed) is never optimistic.
        """
        with self.lock:
            start = self._head_or_none()
            try:
                return self._commit_and_push(edit, message, attempts, backoff, idempotency, author, branch, expect)
            except BaseException:
                # Nothing half-applied: a commit whose push failed or was refused leaves the clone,
                # so nothing reads it as if it were in Git (a restarted worker adopted such a step,
                # pushed nowhere, and waited for it forever). The next call fetches first.
                self._fresh = False
                if start is not None and self._head_or_none() != start:
                    with contextlib.suppress(GitCommandError):
                        self._git().git.reset("--hard", start)
                raise

    def _head_or_none(self) -> str | None:
        try:
            return str(SymbolicReference.dereference_recursive(self._git(), "HEAD"))
        except (ValueError, OSError, GitCommandError):
            return None

    def _commit_and_push(self, edit: Callable[[Repo], list[str]], message: str, attempts: int, backoff: float,
                         idempotency: tuple[str, int] | None, author: str, branch: str | None,
                         expect: dict[str, str] | None) -> str | None:
        optimistic = self._fresh and branch is None
        pushes = 0
        while True:
            if not optimistic:
                self._sync()
            if idempotency is not None:
                found = self.find_step(*idempotency, expect=expect)
                if found is not None:
                    return found
            sha = self._commit(edit, message, author)
            if sha is None:
                if optimistic:  # the remote may hold something else: judge on a fetched head
                    optimistic = False
                    continue
                return None
            try:
                pushes += 1
                self._push(branch)
                self._fresh = branch is None
                return sha
            except _Rejected as exc:
                self.rejections += 1
                log.info("push to %s rejected (attempt %d/%d%s): %s", self.url, pushes, attempts,
                         ", on the last fetched head" if optimistic else "", exc)
                if pushes >= attempts:
                    break
                if not (optimistic and exc.stale):  # a stale head is expected: fetch at once
                    time.sleep(backoff * (2 ** (pushes - 1)))
                optimistic = False
        raise TemporaryError(f"push to {self.url} rejected {attempts} times (remote keeps moving); giving up")

    def _commit(self, edit: Callable[[Repo], list[str]], message: str, author: str) -> str | None:
        """Run ``edit`` and commit exactly the paths it returns; the new commit, or None when they
        hold nothing new. The clone is no longer at the remote's head from here (``_fresh``)."""
        self._fresh = False
        g = self._git().git
        try:
            changed = edit(self)
        except BaseException:
            # Nothing half-applied: a failing edit leaves the clone as it was.
            g.reset("--hard", "HEAD")
            g.clean("-fdq")
            raise
        if not changed:
            return None
        args = [*(["-S"] if self.signing_key else []), "-q", "-m", message, "--author", author]
        try:
            # One process in the usual case: ``commit -- paths`` commits those paths as they are in
            # the worktree (modified or deleted). It fails when one is new to Git or none changed.
            # Git's automatic maintenance (a second process) is left to the fetch of each sync.
            g(c="maintenance.auto=false").commit(*args, "--", *changed)
        except GitCommandError:
            self._run("add", lambda: g.add("--", *changed))
            try:
                g.diff("--cached", "--quiet")
                return None  # nothing staged: the edit wrote what the head holds
            except GitCommandError:
                pass
            self._run("commit", lambda: g.commit(*args))
        return SymbolicReference.dereference_recursive(self._git(), "HEAD")  # read in-process

    def _push(self, branch: str | None = None) -> None:
        repo = self._git()
        remote = repo.remote("origin")
        target = branch or self.branch
        # A pull-request branch is ours alone: it may be replaced (the main branch never is).
        refspec = f"{'+' if branch else ''}HEAD:refs/heads/{target}"
        try:
            with self.credentials.environment() as env, repo.git.custom_environment(**env):
                infos = remote.push(refspec=refspec)
        except GitCommandError as exc:
            msg = _redact(str(exc.stderr or exc).strip(), self.credentials.secrets())
            raise TemporaryError(f"git push to {self.url} failed: {msg}") from None
        # A refused push is not raised by GitPython: read each ref's flags, then raise_if_error().
        for info in infos:
            if info.flags & (info.REJECTED | info.REMOTE_REJECTED):
                raise _Rejected(_redact(info.summary.strip(), self.credentials.secrets()),
                                stale=bool(info.flags & info.REJECTED))
        try:
            infos.raise_if_error()
        except GitCommandError as exc:
            msg = _redact(str(exc.stderr or exc).strip(), self.credentials.secrets())
            raise TemporaryError(f"git push to {self.url} failed: {msg}") from None
        if not infos:
            raise TemporaryError(f"git push to {self.url} reported nothing pushed")

    def generation(self, rev: str = "HEAD") -> int:
        """How many commits ``rev``'s history holds: grows with every commit on a branch, so a zone's
        agents can refuse a desired state older than the one they hold, whichever rollout sent it."""
        return int(self._git().git.rev_list("--count", rev))

    def contains(self, applied: str, ours: str) -> bool:
        """Whether the revision a zone applied (``applied``) is ``ours`` or a descendant of it."""
        if applied == ours:
            return True
        try:
            self._git().git.merge_base("--is-ancestor", ours, applied)
            return True
        except GitCommandError:
            return False

    def step_reached(self, rollout: str, revision: str | None, step: int, depth: int = 200) -> int | None:
        """The step an applied Git revision (Flux's ``lastAppliedRevision``) reaches for ``rollout``:
        ``step`` once it holds the newest commit of ours at or before it, else the newest of our
        steps it does hold (0: none). None when nothing is applied."""
        if revision is None:
            return None
        ours = [(r.step, c.sha) for c in self.log(depth) if (r := c.record) is not None and r.rollout == rollout]
        needed = next((sha for n, sha in ours if n <= step), None)
        if needed is None or self.contains(revision, needed):
            return step
        for n, sha in ours:
            if self.contains(revision, sha):
                return n
        return 0

    def merged(self, sha: str) -> bool:
        """Pull-request mode: whether ``sha`` has reached the main branch (after a fetch)."""
        with self.lock:
            self._sync()
            try:
                self._git().git.merge_base("--is-ancestor", sha, f"origin/{self.branch}")
                return True
            except GitCommandError:
                return False

    def branch_heads(self, prefix: str) -> list[CommitInfo]:
        """The head commit of each remote branch under ``prefix`` (pull-request branches of ours)."""
        with self.lock:
            g = self._git().git
            spec = f"+refs/heads/{prefix}*:refs/remotes/origin/{prefix}*"
            self._run("fetch", lambda: g.fetch("origin", spec, "--prune"))
            refs = [r for r in str(g.for_each_ref("--format=%(refname)", f"refs/remotes/origin/{prefix}")).split()
                    if r.startswith(f"refs/remotes/origin/{prefix}")]
            return [c for r in refs for c in self.log(1, rev=r)]

    # -- reading history -------------------------------------------------------------------

    def changed(self, sha: str) -> list[str]:
        """The files a commit changed (against its first parent)."""
        out = str(self._git().git.diff_tree("--no-commit-id", "--name-only", "-r", sha))
        return [line for line in out.splitlines() if line]

    def log(self, limit: int = 200, path: str | None = None, rev: str | None = None) -> list[CommitInfo]:
        g = self._git().git
        sep, end = "\x1f", "\x1e"
        fmt = sep.join(["%H", "%an", "%at", "%s", "%(trailers:only,unfold)"]) + end
        args = [f"--max-count={limit}", f"--format={fmt}", *([rev] if rev else [])]
        if path:
            args += ["--", path]
        out = str(self._run("log", lambda: g.log(*args)))
        commits = []
        for record in out.split(end):
            record = record.strip("\n")
            if not record:
                continue
            sha, author, at, subject, trailers = (record.split(sep) + [""] * 5)[:5]
            commits.append(CommitInfo(sha, author, float(at), subject, steps.parse_trailers(trailers)))
        return commits


class _Rejected(Exception):
    def __init__(self, summary: str, stale: bool) -> None:
        super().__init__(summary)
        self.stale = stale  # not a fast-forward of the remote's head (a hook's refusal is not)


def reachable(url: str, branch: str, credentials: Credentials | None = None, timeout: float = 15.0) -> str | None:
    """None when ``branch`` exists at ``url`` (git ls-remote), else the reason (secrets redacted)."""
    creds = credentials or Credentials()
    try:
        with creds.environment() as env:
            out = git.cmd.Git().execute(["git", "ls-remote", "--heads", url, branch], env={**os.environ, **env},
                                        kill_after_timeout=timeout)
    except GitCommandError as exc:
        return _redact(str(exc.stderr or exc).strip().splitlines()[-1] if str(exc.stderr or exc).strip() else "failed",
                       creds.secrets())
    return None if str(out).strip() else f"branch {branch} not found"


def init_bare_seeded(bare: Path, seed: Path, branch: str = "main", message: str = "seed") -> str:
    """Create a bare repo whose first commit holds ``seed``'s files (the demo's zone repos)."""
    bare.parent.mkdir(parents=True, exist_ok=True)
    git.Repo.init(bare, bare=True, initial_branch=branch)
    with tempfile.TemporaryDirectory(prefix="fed-seed-") as d:
        work = git.Repo.clone_from(str(bare), d)
        g = work.git
        g.checkout("-b", branch)
        g.config("user.name", "platform-team")
        g.config("user.email", "platform@localhost")
        for src in sorted(seed.rglob("*")):
            if src.is_file():
                dst = Path(d) / src.relative_to(seed)
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_bytes(src.read_bytes())
        g.add("-A")
        g.commit("-m", message)
        g.push("origin", f"HEAD:refs/heads/{branch}")
        return str(g.rev_parse("HEAD"))
