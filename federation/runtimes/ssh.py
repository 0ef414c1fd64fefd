"""The one owner of asyncssh: a pool of SSH connections to agents, with pinned host keys.

One connection per host, reused across steps, with keepalives, and on it one long-lived agent
session: each call sends one protocol request line and reads one response line, under a timeout,
retried with backoff on a fresh connection when the old one broke. Host keys come only from the fleet's known_hosts file: an unknown or changed
key is refused with a clear error. Callers: ``runtimes.vm``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import warnings
from dataclasses import dataclass
from typing import Any

with warnings.catch_warnings():
    # asyncssh still names DSA key types, which cryptography >= 51 deprecates on use: a warning
    # on every run of ours that nobody can act on (we never offer or accept DSA keys).
    warnings.filterwarnings("ignore", message="DSA is deprecated")
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


CIPHERS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com"]


class Pool:
    """Connections by target; bounded concurrency across all of them."""

    def __init__(self, *, concurrency: int = 64, connect_timeout: float = 10.0, call_timeout: float = 10.0,
                 keepalive: float = 15.0, retries: int = 2, backoff: float = 0.2) -> None:
        self._conns: dict[Target, asyncssh.SSHClientConnection] = {}
        self._channels: dict[Target, tuple[asyncssh.SSHClientProcess[str], asyncio.Lock]] = {}
        self._locks: dict[Target, asyncio.Lock] = {}
        self._opts: dict[tuple[str, str, str | None], tuple[tuple[int, ...], asyncssh.SSHClientConnectionOptions]] = {}
        self._sem = asyncio.Semaphore(concurrency)
        self.connect_timeout, self.call_timeout = connect_timeout, call_timeout
        self.keepalive, self.retries, self.backoff = keepalive, retries, backoff

    def _options(self, t: Target) -> asyncssh.SSHClientConnectionOptions:
        """Connection options per (user, known_hosts, key), built once: the known_hosts file and
        the key are read and parsed once, not per host (500 hosts: 500 parses of both otherwise).
        Re-read when either file changes on disk (a rotated key, a re-pinned host)."""
        stamp = tuple(os.stat(p).st_mtime_ns if p and os.path.exists(p) else 0
                      for p in (t.known_hosts, t.identity_file))
        key = (t.user, t.known_hosts, t.identity_file)
        cached = self._opts.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            known = asyncssh.read_known_hosts(t.known_hosts)
            keys = [asyncssh.read_private_key(t.identity_file)] if t.identity_file else None
        except (OSError, asyncssh.KeyImportError) as exc:
            raise PermanentError(f"{t}: cannot read {t.known_hosts} or the hub's key: {exc}") from None
        opts = asyncssh.SSHClientConnectionOptions(
            username=t.user, known_hosts=known, client_keys=keys, agent_path=None,
            keepalive_interval=self.keepalive, keepalive_count_max=3,
            # AES-GCM first: one cipher context per direction (hardware AES), where asyncssh's
            # chacha20-poly1305 builds new ones per packet; both are AEAD, chacha stays offered.
            encryption_algs=CIPHERS, compression_algs=["none"])
        self._opts[key] = (stamp, opts)
        return opts

    async def _connection(self, t: Target) -> asyncssh.SSHClientConnection:
        lock = self._locks.setdefault(t, asyncio.Lock())
        async with lock:
            conn = self._conns.get(t)
            if conn is not None and not conn.is_closed():
                return conn
            try:
                conn = await asyncio.wait_for(asyncssh.connect(
                    t.address, t.port, options=self._options(t)), timeout=self.connect_timeout)
            except asyncssh.HostKeyNotVerifiable as exc:
                raise PermanentError(f"{t}: host key not accepted by {t.known_hosts} ({exc.reason}); "
                                     "refusing to connect") from None
            except asyncssh.PermissionDenied:
                raise PermanentError(f"{t}: the hub's key was refused") from None
            except (TimeoutError, OSError, asyncssh.Error) as exc:
                raise TemporaryError(f"{t}: cannot connect: {exc or type(exc).__name__}") from None
            self._conns[t] = conn
            return conn

    async def call(self, t: Target, op: str, _call_timeout: float | None = None, **payload: Any) -> dict[str, Any]:
        """One protocol request; TemporaryError when the host stays unreachable. ``_call_timeout``
        replaces the pool's per-call timeout for a request that waits on purpose (drain)."""
        request = json.dumps({"protocol": PROTOCOL, "op": op, **payload}) + "\n"
        last: Exception | None = None
        async with self._sem:
            for attempt in range(self.retries + 1):
                try:
                    # asyncio.timeout, not wait_for: no inner task whose late failure is logged as
                    # "Task exception was never retrieved" with a traceback.
                    async with asyncio.timeout(_call_timeout or self.call_timeout):
                        return await self._exchange(t, request)
                except PermanentError:
                    raise
                except (OSError, asyncssh.Error, TimeoutError, TemporaryError, EOFError) as exc:
                    last = exc
                    self._drop(t)
                    if attempt < self.retries:
                        await asyncio.sleep(self.backoff * (2 ** attempt))
        raise TemporaryError(f"{t}: agent call {op} failed: {last or 'unknown error'}")

    async def _channel(self, t: Target) -> tuple[asyncssh.SSHClientProcess[str], asyncio.Lock]:
        """One long-lived agent session per host: requests go down it one line at a time."""
        chan = self._channels.get(t)
        if chan is not None and not chan[0].is_closing():
            return chan
        conn = await self._connection(t)
        proc = await conn.create_process(AGENT_COMMAND, encoding="utf-8")
        chan = (proc, asyncio.Lock())
        self._channels[t] = chan
        return chan

    async def _exchange(self, t: Target, request: str) -> dict[str, Any]:
        proc, lock = await self._channel(t)
        async with lock:
            proc.stdin.write(request)
            line = await proc.stdout.readline()
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
        chan = self._channels.pop(t, None)
        if chan is not None:
            chan[0].close()
        conn = self._conns.pop(t, None)
        if conn is not None:
            conn.close()

    async def close(self) -> None:
        for proc, _ in self._channels.values():
            proc.close()
        self._channels.clear()
        conns = list(self._conns.values())
        self._conns.clear()
        for c in conns:
            c.close()
        for c in conns:
            try:
                await asyncio.wait_for(c.wait_closed(), timeout=2)
            except (TimeoutError, OSError, asyncssh.Error):
                pass


async def admin_install(t: Target, files: dict[str, bytes], commands: list[str],
                        timeout: float = 60.0) -> list[tuple[str, int, str]]:
    """Copy ``files`` (remote path -> content) over SFTP, then run ``commands``, with admin rights.

    Used by ``fedctl agents install`` with an operator's key (not the hub's, which can only run the
    agent). Host keys are pinned as for every connection. Returns (command, exit status, output) up
    to the first command that failed.
    """
    try:
        async with asyncssh.connect(t.address, t.port, username=t.user, known_hosts=t.known_hosts,
                                    client_keys=[t.identity_file] if t.identity_file else None,
                                    agent_path=None, connect_timeout=timeout) as conn:
            async with conn.start_sftp_client() as sftp:
                for path, data in sorted(files.items()):
                    parent = path.rsplit("/", 1)[0]
                    if parent:
                        await sftp.makedirs(parent, exist_ok=True)
                    async with sftp.open(path, "wb") as f:
                        await f.write(data)
            out = []
            for cmd in commands:
                r = await asyncio.wait_for(conn.run(cmd, check=False), timeout=timeout)
                out.append((cmd, int(r.exit_status or 0), str(r.stdout or "") + str(r.stderr or "")))
                if out[-1][1] != 0:
                    break  # later commands assume this one's effect (a verified file before its rename)
            return out
    except asyncssh.HostKeyNotVerifiable as exc:
        raise PermanentError(f"{t}: host key not accepted by {t.known_hosts} ({exc.reason}); refusing to connect") from None
    except asyncssh.PermissionDenied:
        raise PermanentError(f"{t}: the admin key was refused") from None
    except (TimeoutError, OSError, asyncssh.Error) as exc:
        raise TemporaryError(f"{t}: install failed: {exc or type(exc).__name__}") from None
