"""The agent under hostile input, through the real ``fed-agent rpc`` program (the OpenSSH forced
command) and the agent's own modules: bounded request lines, desired states that must carry a step
and a revision, manifests checked (names, env, control characters, commands under the VM's
allowed directories, never root by default), systemd values quoted per systemd's rules, applies
serialised."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.peakrss import Measured
from vmagent import converge, manifests, state, units

BIN = Path(sys.executable).parent


def release(step: int | None = 1, command: list[str] | None = None, env: dict[str, Any] | None = None,
            version: str = "v1", revision: str = "r1") -> dict[str, Any]:
    d: dict[str, Any] = {"revision": revision, "manifests": [{
        "kind": "ZoneRelease", "metadata": {"name": "frontend"},
        "spec": {"service": "frontend",
                 "versions": {version: {"command": ["fed-demo-app", "--port", "${PORT}"] if command is None else command,
                                        "env": env or {}, "replicas": 1, "health": "/healthz"}},
                 "serving": {version: 10000}}}]}
    if step is not None:
        d["step"] = step
    return d


def rpc(state_dir: Path, chunks: Iterable[bytes], timeout: float = 120) -> tuple[list[dict[str, Any]], int]:
    """Answers of ``fed-agent rpc`` to the bytes of ``chunks`` on its stdin, and its peak RSS in KiB
    (of the agent alone, tests/peakrss.py: wait4 on a child forked from this big test process would
    count this process's pages)."""
    run = Measured([str(BIN / "fed-agent"), "rpc", "--state-dir", str(state_dir)],
                   state_dir.parent / f"{state_dir.name}.rss",
                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    p = run.proc
    assert p.stdin is not None and p.stdout is not None
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(p.stdout.read()))  # type: ignore[union-attr]
    reader.start()
    try:
        for chunk in chunks:
            p.stdin.write(chunk)
        p.stdin.close()
    except BrokenPipeError:
        pass
    try:
        run.wait(timeout)
    finally:
        reader.join(timeout)
        p.stdout.close()
    return [json.loads(x) for x in out[0].decode().splitlines()], run.peak_kib()


def request(op: str, **kw: Any) -> bytes:
    return (json.dumps({"protocol": 1, "op": op, **kw}) + "\n").encode()


def test_a_200_mb_request_line_is_refused_in_bounded_memory(tmp_path: Path):
    def huge() -> Iterator[bytes]:  # 200 MiB on one line, then a hello
        yield b'{"protocol": 1, "op": "apply", "desired": {"revision": "'
        block = b"x" * (1 << 20)
        for _ in range(200):
            yield block
        yield b'"}}\n' + request("hello")

    answers, rss = rpc(tmp_path / "s", huge())
    assert answers[0] == {"ok": False, "error": "request line longer than 1048576 bytes"}
    assert answers[1]["ok"] is True  # the next line is answered as usual
    assert not (tmp_path / "s" / "desired.json").exists()
    assert rss < 100 * 1024, f"peak RSS {rss} KiB"


BAD_DESIRED = [
    (release(step=None), "apply needs step"),
    ({**release(), "revision": None}, "apply needs revision"),
    ({**release(), "revision": "r1\nx"}, "apply needs revision"),
    (release(env={"LD_PRELOAD": "/tmp/evil.so"}), "env LD_PRELOAD is refused"),
    (release(env={"PYTHONPATH": "/tmp"}), "env PYTHONPATH is refused"),
    (release(env={"A": "1\nExecStartPre=/bin/sh -c id"}), "contains a control character"),
    (release(env={"A B": "1"}), "is not a plain variable name"),
    (release(version="v2\nUser=root"), "is not a name"),
    (release(command=["/bin/sh", "-c", "id\nExecStartPost=/bin/true"]), "contains a control character"),
    (release(command=[]), "command must be a list"),
    ({**release(), "generation": -1}, "generation must be a whole number"),
]


@pytest.mark.parametrize(("desired", "reason"), BAD_DESIRED)
def test_a_bad_desired_state_is_refused_and_nothing_stored(tmp_path: Path, desired: dict[str, Any], reason: str):
    answers, _ = rpc(tmp_path / "s", [request("apply", desired=desired)])
    assert answers[0]["ok"] is False and reason in answers[0]["error"], answers
    assert not (tmp_path / "s" / "desired.json").exists()


def test_commands_must_resolve_under_the_allowed_directories(tmp_path: Path):
    apps = tmp_path / "apps"
    apps.mkdir()
    config = converge.Config(str(tmp_path / "agent"), "vms", None, None, ports=(31700, 31710),
                             allowed_commands=(str(apps),))
    agent = converge.Agent(config)
    try:
        assert agent.apply(release(command=["/bin/sh", "-c", "sleep 100"]))["accepted"]
        with pytest.raises(manifests.Refused, match="is not under an allowed command directory"):
            agent.converge_once()
        (apps / "sneaky").symlink_to("/bin/sh")  # a symlink out of the directory does not count
        assert agent.apply(release(2, command=[str(apps / "sneaky"), "-c", "sleep 100"], revision="r2"))["accepted"]
        with pytest.raises(manifests.Refused, match=r"/bin/.*sh\) is not under"):
            agent.converge_once()
        assert agent.sup.instances == {}  # nothing ran
    finally:
        agent.shutdown_instances()


def test_the_cli_defaults_are_strict():
    from vmagent import cli

    seen: dict[str, Any] = {}

    class Stop(Exception):
        pass

    def fake_agent(config: converge.Config) -> None:
        seen.update(vars(config))
        raise Stop

    real = converge.Agent
    converge.Agent = fake_agent  # type: ignore[assignment,misc]
    try:
        with pytest.raises(Stop):
            cli.main(["run", "--zone", "z", "--state-dir", "/nonexistent-state"])
    finally:
        converge.Agent = real  # type: ignore[misc]
    assert seen["allowed_commands"] == ("/opt/fed-apps",)
    assert seen["app_user"] == "fed-app" and seen["allow_root_apps"] is False


def test_an_app_never_runs_as_root_by_default():
    with pytest.raises(ValueError, match="refusing to run an app as root"):
        units.render_unit("frontend/v1/0", "frontend", "v1", ["/opt/fed-apps/app"], {}, "/tmp/x.log",
                          user=None, allow_root=False)
    text = units.render_unit("frontend/v1/0", "frontend", "v1", ["/opt/fed-apps/app"], {}, "/tmp/x.log",
                             user="fed-app", allow_root=False)
    for line in ("User=fed-app", "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes"):
        assert line in text.splitlines()


def test_systemd_values_are_quoted_per_systemds_rules(tmp_path: Path):
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze (package systemd) is installed by make install")
    tricky = 'say "hi" \\ 100% $HOME ;  && `x` \'q\''
    text = units.render_unit("frontend/v1/0", "frontend", "v1", [str(BIN / "fed-demo-app"), tricky],
                             {"GREETING": tricky}, str(tmp_path / "v1.log"), user="nobody")
    exec_line = next(x for x in text.splitlines() if x.startswith("ExecStart="))
    assert exec_line.endswith(' "say \\"hi\\" \\\\ 100%% $$HOME ;  && `x` \'q\'"')
    env_line = next(x for x in text.splitlines() if x.startswith("Environment="))
    assert env_line == 'Environment="GREETING=say \\"hi\\" \\\\ 100%% $HOME ;  && `x` \'q\'"'
    assert len([x for x in text.splitlines() if x.startswith(("Exec", "Environment", "User"))]) == 3
    unit = tmp_path / units.unit_name("frontend/v1/0")
    unit.write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for bad in ("a\nExecStartPre=/bin/sh", "a\rb", "a\x00b"):
        with pytest.raises(ValueError, match="control characters"):
            units.render_unit("k/v/0", "k", "v", ["/opt/fed-apps/app", bad], {}, "/tmp/x.log", user="nobody")
        with pytest.raises(ValueError, match="control characters"):
            units.render_unit("k/v/0", "k", "v", ["/opt/fed-apps/app"], {"A": bad}, "/tmp/x.log", user="nobody")


def test_concurrent_applies_never_store_an_older_step(tmp_path: Path):
    for trial in range(8):
        sd = state.StateDir(str(tmp_path / f"t{trial}"))
        steps = list(range(1, 9))
        random.Random(trial).shuffle(steps)
        barrier = threading.Barrier(len(steps))

        def apply(step: int, sd: state.StateDir = sd, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            sd.accept(release(step, revision=f"r{step}"))  # type: ignore[arg-type]

        threads = [threading.Thread(target=apply, args=(s,)) for s in steps]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert (sd.desired() or {})["step"] == 8, trial


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                     max_leaves=20)


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(desired=_json | st.fixed_dictionaries({"revision": _json, "step": _json, "manifests": _json}),
       raw=st.text(max_size=200))
def test_fuzzed_requests_are_answered_never_raised(tmp_path: Path, desired: Any, raw: str):
    from vmagent import protocol
    from vmagent import rpc as agent_rpc

    backend = agent_rpc.StateDirBackend(str(tmp_path / "fuzz"))
    for line in (json.dumps({"protocol": 1, "op": "apply", "desired": desired}), raw):
        answer = protocol.handle(line, backend)
        assert isinstance(answer.get("ok"), bool)
        if not answer["ok"]:
            assert "\n" not in answer["error"]
    stored = backend.state.desired()
    if stored is not None:
        manifests.check_desired(stored)  # whatever was stored passes the checks


# ----------------------------------------------------------------------------- the line protocol, fuzzed

def _framed(data: bytes, limit: int) -> list[str | None]:
    """What ``protocol.read_lines`` must yield for ``data``: its lines, one too long as None."""
    *lines, last = data.split(b"\n")
    if last:
        lines.append(last)
    return [x.decode("utf-8", errors="replace") if len(x) <= limit else None for x in lines]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=st.lists(st.binary(max_size=24) | st.sampled_from([b"\n", b"\n\n", b"y" * 40, b"\xff\xfe", b"\xc3"]),
                       max_size=24),
       reads=st.lists(st.integers(1, 50), min_size=1, max_size=8))
def test_request_lines_are_framed_whatever_the_reads(pieces: list[bytes], reads: list[int]):
    """Any bytes, read in any chunk sizes: the lines ``split`` gives, a line over the bound answered as
    one too-long line (None) and the rest of it skipped, never a line glued to the next."""
    from unittest import mock

    from vmagent import protocol

    data = b"".join(pieces)
    sizes = iter(reads * (len(data) + 1))
    pos = 0

    def read(n: int) -> bytes:
        nonlocal pos
        chunk = data[pos:pos + min(n, next(sizes))]
        pos += len(chunk)
        return chunk

    with mock.patch.object(manifests, "MAX_LINE", 32):
        got = list(protocol.read_lines(read))
    assert got == _framed(data, 32)


class _NoWaitBackend:
    """The state-dir backend of ``fed-agent rpc``, its drain answered at once (it waits up to the
    request's timeout for a running agent, and there is none here)."""

    def __init__(self, state_dir: Path) -> None:
        from vmagent import rpc as agent_rpc

        self.real = agent_rpc.StateDirBackend(str(state_dir))
        self.status, self.apply, self.rollback = self.real.status, self.real.apply, self.real.rollback

    def drain(self, enable: bool, timeout: float) -> dict[str, Any]:
        assert isinstance(enable, bool) and 0 <= timeout <= 600, (enable, timeout)
        return {"draining": enable, "drained": True, "active_requests": 0, "envoy_state": None}


_fields = st.dictionaries(st.sampled_from(["protocol", "op", "desired", "enable", "timeout", "x"]),
                          _json | st.sampled_from(["hello", "status", "apply", "drain", "rollback", 1]), max_size=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(req=_fields, op=st.sampled_from(["hello", "status", "apply", "drain", "rollback"]),
       command=st.text(max_size=60))
def test_every_op_with_fuzzed_fields_gets_one_clear_answer(tmp_path: Path, req: dict[str, Any], op: str, command: str):
    """Each op with fields of any type (and any SSH command line): one answer, ``ok`` a bool; a refusal
    is one line saying what was wrong (a ValueError's text), never an exception's type and repr."""
    from vmagent import protocol

    backend = _NoWaitBackend(tmp_path / "ops")
    lines = [json.dumps({"protocol": 1, "op": op, **{k: v for k, v in req.items() if k != "protocol"}}),
             json.dumps(req)]
    inline = protocol.request_in_command(command)
    if inline is not None:
        lines.append(inline)
    for line in lines:
        answer = protocol.handle(line, backend)
        assert isinstance(answer.get("ok"), bool), answer
        json.loads(protocol.encode(answer))  # what goes back on the channel is one JSON line
        assert protocol.encode(answer).count("\n") == 1
        if not answer["ok"]:
            error = answer["error"]
            assert error and "\n" not in error
            assert not error.startswith(("TypeError", "KeyError", "AttributeError", "IndexError")), (line, error)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(st.binary(max_size=40) | st.sampled_from([b"\n", request("hello"), request("status"),
                                                                  b'{"protocol": 1, "op": "apply"}\n', b"\x00\n"]),
                       max_size=12))
def test_the_rpc_program_answers_every_line_of_any_stream(tmp_path: Path, pieces: list[bytes]):
    """The real ``fed-agent rpc`` (the forced command) on any byte stream: one answer per non-blank
    line, in bounded time, then it ends (no hang on a last line without a newline)."""
    data = b"".join(pieces)
    expected = [x for x in _framed(data, 1 << 20) if x is not None and x.strip()]
    state_dir = tmp_path / f"rpc-{random.getrandbits(32)}"
    answers, rss = rpc(state_dir, [data], timeout=60)
    assert len(answers) == len(expected), (data, answers)
    assert all(isinstance(a.get("ok"), bool) for a in answers)
    assert rss < 100 * 1024, f"peak RSS {rss} KiB"
