"""The hostile agent inputs again, through a real OpenSSH sshd whose authorized_keys line forces
``fed-agent rpc`` (as `fedctl agents install` sets it up): what reaches the agent over SSH is
refused the same way, one answer per request, nothing stored, and the channel keeps answering."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from federation.demo.procs import Supervisor
from federation.runtimes.ssh import Pool, Target
from tests.hostile.test_agent_input import BAD_DESIRED, release, request
from tests.integration.sshd import keygen, start_sshd

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    tmp = tmp_path_factory.mktemp("openssh-agent")
    procs = Supervisor(tmp / "logs")
    hub_pub = keygen(tmp / "hub_key")
    try:
        port = start_sshd(tmp, procs, f'command="{BIN / "fed-agent"} rpc --state-dir {tmp / "state"}",restrict {hub_pub}\n')
        yield tmp, port
    finally:
        procs.stop_all()


def call(tmp: Path, port: int, op: str, **kw: Any) -> dict[str, Any]:
    async def one() -> dict[str, Any]:
        pool = Pool(call_timeout=30)
        try:
            return dict(await pool.call(Target("127.0.0.1", port, "root", str(tmp / "known_hosts"),
                                               str(tmp / "hub_key")), op, **kw))
        finally:
            await pool.close()
    return asyncio.run(one())


def stored(tmp: Path) -> str | None:
    f = tmp / "state" / "desired.json"
    return f.read_text() if f.exists() else None


@pytest.mark.parametrize(("desired", "reason"), BAD_DESIRED)
def test_a_bad_desired_state_over_openssh_is_refused_and_nothing_stored(sshd: tuple[Path, int],
                                                                        desired: dict[str, Any], reason: str):
    tmp, port = sshd
    before = stored(tmp)
    answer = call(tmp, port, "apply", desired=desired)
    assert answer["ok"] is False and reason in answer["error"], answer
    assert stored(tmp) == before


def test_a_32_mb_request_line_over_openssh_is_refused_and_the_channel_answers_on(sshd: tuple[Path, int]):
    tmp, port = sshd
    before = stored(tmp)
    p = subprocess.Popen(["ssh", "-i", str(tmp / "hub_key"), "-p", str(port), "-o", "BatchMode=yes",
                          "-o", f"UserKnownHostsFile={tmp / 'known_hosts'}", "-o", "StrictHostKeyChecking=yes",
                          "root@127.0.0.1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    assert p.stdin is not None and p.stdout is not None and p.stderr is not None
    got: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda n=n, f=f: got.__setitem__(n, f.read()))  # type: ignore[misc]
               for n, f in (("out", p.stdout), ("err", p.stderr))]
    for r in readers:
        r.start()
    try:
        try:
            p.stdin.write(b'{"protocol": 1, "op": "apply", "desired": {"revision": "')
            block = b"x" * (1 << 20)
            for _ in range(32):
                p.stdin.write(block)
            p.stdin.write(b'"}}\n' + request("hello"))
            p.stdin.close()
        except BrokenPipeError:
            pass
        p.wait(timeout=300)  # a guard against a hang only
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, 9)
        p.wait()
        raise
    finally:
        for r in readers:
            r.join(60)
        p.stdout.close()
        p.stderr.close()
    out, err = got.get("out", b""), got.get("err", b"")
    lines = out.decode().splitlines()
    assert len(lines) == 2, (lines, err[-500:])
    assert '"request line longer than 1048576 bytes"' in lines[0] and '"ok": false' in lines[0], lines[0]
    assert '"ok": true' in lines[1] and '"protocol": 1' in lines[1], lines[1]
    assert stored(tmp) == before


def test_an_older_generation_over_openssh_never_replaces_a_newer_one(sshd: tuple[Path, int]):
    tmp, port = sshd
    newer = {**release(step=1, revision="r-new"), "generation": 7}
    assert call(tmp, port, "apply", desired=newer)["accepted"]
    answer = call(tmp, port, "apply", desired={**release(step=9, revision="r-old"), "generation": 6})
    assert answer["ok"] and not answer["accepted"] and "generation 6 is older than stored 7" in answer["reason"]
    assert '"r-new"' in (stored(tmp) or "")
