"""The agent protocol: one JSON object per line each way, versioned.

Request: ``{"protocol": 1, "op": "hello"|"status"|"apply"|"drain"|"rollback", ...}``; response:
``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. The hub speaks it over an SSH channel:
either OpenSSH running ``fed-agent rpc`` as a forced command, or the agent's own SSH endpoint.
Standard library only.
"""

from __future__ import annotations

import json
from typing import Any

from vmagent import PROTOCOL_VERSION, __version__

OPS = ("hello", "status", "apply", "drain", "rollback")


def decode(line: str) -> dict[str, Any]:
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
    return req


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


def encode(resp: dict[str, Any]) -> str:
    return json.dumps(resp, sort_keys=True) + "\n"


def handle(line: str, backend: Any) -> dict[str, Any]:
    """Answer one request line with ``backend`` (an Agent, or the state-dir client of ``rpc``)."""
    try:
        req = decode(line)
        op = req["op"]
        if op == "hello":
            return {"ok": True, "protocol": PROTOCOL_VERSION, "agent_version": __version__}
        if op == "status":
            return dict(backend.status(), ok=True)
        if op == "apply":
            return dict(backend.apply(req.get("desired") or {}), ok=True)
        if op == "drain":
            enable = req.get("enable", True)
            timeout = req.get("timeout", 30.0)
            if not isinstance(enable, bool) or not isinstance(timeout, (int, float)) or not 0 <= timeout <= 600:
                raise ValueError("drain takes enable (true/false) and timeout (seconds, 0..600)")
            return dict(backend.drain(enable, float(timeout)), ok=True)
        return dict(backend.rollback(), ok=True)
    except Exception as exc:  # every failure is an answer, never a dropped channel
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)}
