"""The one owner of asyncssh: a pool of SSH connections to agents, with pinned host keys.

One connection per host, reused across steps, with keepalives; each call opens a channel, sends one
protocol request line and reads one response line, under a timeout, retried with backoff on a
broken connection. Host keys come only from the fleet's known_hosts file: an unknown or changed
key is refused with a clear error. Callers: ``runtimes.vm``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

import asyncssh

from federation.core.errors import PermanentError, TemporaryError

log = logging.getLogger("federation.ssh")

PROTOCOL = 1
AGENT_COMMAND = "fed-agent rpc"


@dataclass(frozen=True)
class Target:
    address: str
    port: int
    user: str
    known_hosts: str
    identity_file: str | None = None

    def __str__(self) -> str:
        return f"{self.user}@{self.address}:{self.port}"


class Pool:
    """Connections by target; bounded concurrency across all of them."""

    def __init__(self, *, concurrency: int = 64, connect_timeout: float = 10.0, call_timeout: float = 10.0,
                 keepalive: float = 15.0, retries: int = 2, backoff: float = 0.2) -> None:
        self._conns: dict[Target, asyncssh.SSHClientConnection] = {}
        self._locks: dict[Target, asyncio.Lock] = {}
        self._sem = asyncio.Semaphore(concurrency)
        self.connect_timeout, self.call_timeout = connect_timeout, call_timeout
        self.keepalive, self.retries, self.backoff = keepalive, retries, backoff

    async def _connection(self, t: Target) -> asyncssh.SSHClientConnection:
        lock = self._locks.setdefault(t, asyncio.Lock())
        async with lock:
            conn = self._conns.get(t)
            if conn is not None and not conn.is_closed():
                return conn
            try:
                conn = await asyncio.wait_for(asyncssh.connect(
                    t.address, t.port, username=t.user, known_hosts=t.known_hosts,
                    client_keys=[t.identity_file] if t.identity_file else None,
                    agent_path=None, keepalive_interval=self.keepalive, keepalive_count_max=3,
                ), timeout=self.connect_timeout)
            except asyncssh.HostKeyNotVerifiable as exc:
                raise PermanentError(f"{t}: host key not accepted by {t.known_hosts} ({exc.reason}); "
                                     "refusing to connect") from None
            except asyncssh.PermissionDenied:
                raise PermanentError(f"{t}: the hub's key was refused") from None
            except (TimeoutError, OSError, asyncssh.Error) as exc:
                raise TemporaryError(f"{t}: cannot connect: {exc or type(exc).__name__}") from None
            self._conns[t] = conn
            return conn

    async def call(self, t: Target, op: str, **payload: Any) -> dict[str, Any]:
        """One protocol request; TemporaryError when the host stays unreachable."""
        request = json.dumps({"protocol": PROTOCOL, "op": op, **payload}) + "\n"
        last: Exception | None = None
        async with self._sem:
            for attempt in range(self.retries + 1):
                try:
                    conn = await self._connection(t)
                    return await asyncio.wait_for(self._exchange(conn, request), timeout=self.call_timeout)
                except PermanentError:
                    raise
                except (TimeoutError, OSError, asyncssh.Error, TemporaryError, EOFError) as exc:
                    last = exc
                    self._drop(t)
                    if attempt < self.retries:
                        await asyncio.sleep(self.backoff * (2 ** attempt))
        raise TemporaryError(f"{t}: agent call {op} failed: {last or 'unknown error'}")

    @staticmethod
    async def _exchange(conn: asyncssh.SSHClientConnection, request: str) -> dict[str, Any]:
        async with conn.create_process(AGENT_COMMAND, encoding="utf-8") as proc:
            proc.stdin.write(request)
            line = await proc.stdout.readline()
            proc.stdin.write_eof()
        if not line:
            raise EOFError("agent closed the channel without answering")
        try:
            resp = json.loads(line)
        except ValueError:
            raise PermanentError(f"agent answered something that is not the protocol: {line[:80]!r}") from None
        if not isinstance(resp, dict):
            raise PermanentError("agent answer is not a JSON object")
        return resp

    def _drop(self, t: Target) -> None:
        conn = self._conns.pop(t, None)
        if conn is not None:
            conn.close()

    async def close(self) -> None:
        conns = list(self._conns.values())
        self._conns.clear()
        for c in conns:
            c.close()
        for c in conns:
            try:
                await asyncio.wait_for(c.wait_closed(), timeout=2)
            except (TimeoutError, OSError, asyncssh.Error):
                pass
