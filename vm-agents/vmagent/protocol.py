"""The agent protocol: one JSON object per line each way, versioned.

Request: ``{"protocol": 1, "op": "hello"|"status"|"apply"|"drain"|"rollback", ...}``; response:
``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. The hub speaks it over an SSH channel:
either OpenSSH running ``fed-agent rpc`` as a forced command, or the agent's own SSH endpoint.
Standard library only.
"""

from __future__ import annotations

import json
from typing import Any, TypedDict

from vmagent import PROTOCOL_VERSION, __version__, manifests

OPS = ("hello", "status", "apply", "drain", "rollback")


# The messages, as both sides type them (the hub imports these from here: one definition).


class Desired(TypedDict, total=False):
    """What the hub wants a VM to run: the zone repo's revision, the step of the rollout that sent
    it, the revision's generation (the zone branch's commit count: it orders the desired states of
    every rollout in the zone, where steps of different rollouts do not) and the ZoneRelease
    manifests."""

    revision: str
    step: int
    generation: int
    manifests: list[dict[str, Any]]


class Request(TypedDict, total=False):
    protocol: int
    op: str
    desired: Desired  # apply
    enable: bool  # drain
    timeout: float  # drain


class VersionStatus(TypedDict):
    replicas: int
    healthy: int
    ready_percent: float


class InstanceRecord(TypedDict, total=False):
    """One running instance as the agent stores it (and adopts it after a restart)."""

    service: str
    version: str
    port: int
    pid: int
    command: list[str]
    health: str
    restarts: int
    unit: str


class Answer(TypedDict, total=False):
    """Every answer: ``ok``, and ``error`` when not."""

    ok: bool
    error: str


class HelloAnswer(Answer, total=False):
    protocol: int
    agent_version: str


class StatusAnswer(Answer, total=False):
    protocol: int
    agent_version: str
    zone: str
    runner: str
    revision: str | None
    step: int | None
    generation: int | None
    applied_revision: str | None
    applied_step: int | None
    health: str
    draining: bool
    active_requests: int
    envoy_state: str | None
    versions: dict[str, VersionStatus]
    instances: list[dict[str, Any]]


class ApplyAnswer(Answer, total=False):
    accepted: bool
    reason: str
    revision: str | None


class DrainAnswer(Answer, total=False):
    draining: bool
    drained: bool
    active_requests: int
    envoy_state: str | None
    pending: str  # fed-agent rpc: why the running agent has not picked the change up yet


def decode(line: str) -> Request:
    if len(line) > manifests.MAX_LINE:
        raise ValueError(f"request line longer than {manifests.MAX_LINE} bytes")
    try:
        req = json.loads(line)
    except ValueError as exc:
        raise ValueError(f"request is not JSON: {exc}") from None
    if not isinstance(req, dict):
        raise ValueError("request must be a JSON object")
    if req.get("protocol") != PROTOCOL_VERSION:
        raise ValueError(f"protocol {req.get('protocol')!r} not supported (this agent speaks {PROTOCOL_VERSION})")
    if req.get("op") not in OPS:
        raise ValueError(f"unknown op {req.get('op')!r}; known: {', '.join(OPS)}")
    return req  # type: ignore[return-value]  # the fields an op uses are checked where it uses them


def request_in_command(command: str) -> str | None:
    """The request carried by an SSH command line, if any: ``{...}`` or ``fed-agent rpc {...}``.

    Lets one-shot clients (``ssh host '<json>'``, ``ansible -m raw``) speak the protocol without
    stdin. Whatever else a command says is never run: it is answered as a bad request.
    """
    text = command.strip()
    if not text:
        return None
    if text.startswith("{"):
        return text
    first, _, rest = text.partition(" ")
    if first.endswith("fed-agent") and rest.startswith("rpc"):
        rest = rest[3:].strip()
        # Flags of the forced command line itself (e.g. --state-dir X) carry no request.
        if rest.startswith("{"):
            return rest
        return None
    return text  # not ours: handle() answers it as "not JSON"


def read_lines(read: Any) -> Any:
    """Request lines from ``read(n) -> bytes`` (blocking), each at most MAX_LINE bytes: a longer
    one is replaced by ``None`` (answered as too long) and the rest of it is skipped unread into
    memory. Yields str lines without their newline."""
    buf = b""
    skipping = False
    while True:
        chunk = read(65536)
        if not chunk:
            if buf and not skipping:
                yield buf.decode("utf-8", errors="replace")
            return
        buf += chunk
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                break
            line, buf = buf[:nl], buf[nl + 1:]
            if skipping:
                skipping = False
                continue
            yield line.decode("utf-8", errors="replace") if len(line) <= manifests.MAX_LINE else None
        if len(buf) > manifests.MAX_LINE:
            if not skipping:
                yield None
            skipping = True
            buf = b""


TOO_LONG: Answer = {"ok": False, "error": f"request line longer than {manifests.MAX_LINE} bytes"}


def encode(resp: Answer) -> str:
    return json.dumps(resp, sort_keys=True) + "\n"


def handle(line: str, backend: Any) -> Answer:
    """Answer one request line with ``backend`` (an Agent, or the state-dir client of ``rpc``)."""
    try:
        req = decode(line)
        op = req["op"]
        if op == "hello":
            hello: HelloAnswer = {"ok": True, "protocol": PROTOCOL_VERSION, "agent_version": __version__}
            return hello
        if op == "status":
            status: StatusAnswer = dict(backend.status(), ok=True)  # type: ignore[assignment]
            return status
        if op == "apply":
            desired = req.get("desired")
            manifests.check_desired(desired)  # before anything is stored: one line naming the problem
            return dict(backend.apply(desired), ok=True)  # type: ignore[return-value]
        if op == "drain":
            enable = req.get("enable", True)
            timeout = req.get("timeout", 30.0)
            if not isinstance(enable, bool) or not isinstance(timeout, (int, float)) or not 0 <= timeout <= 600:
                raise ValueError("drain takes enable (true/false) and timeout (seconds, 0..600)")
            return dict(backend.drain(enable, float(timeout)), ok=True)  # type: ignore[return-value]
        return dict(backend.rollback(), ok=True)  # type: ignore[return-value]
    except Exception as exc:  # every failure is an answer, never a dropped channel
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)}
