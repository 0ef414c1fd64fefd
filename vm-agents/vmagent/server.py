"""``fed-agent serve``: the agent's own SSH endpoint (asyncssh) plus its converge loop, one process.

It offers the agent protocol and nothing else: no shell, no port forwarding, no SFTP/SCP, no PTY;
whatever command a client asks for, the channel speaks the protocol. Only keys in the
authorized-keys file get in. asyncssh is needed only here; the rest of the agent is stdlib.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import warnings
from collections.abc import AsyncIterator
from typing import Any

with warnings.catch_warnings():
    # asyncssh still names DSA key types, which cryptography >= 51 deprecates on use: a warning
    # on every run of ours that nobody can act on (we never offer or accept DSA keys).
    warnings.filterwarnings("ignore", message="DSA is deprecated")
    import asyncssh

from vmagent import converge, manifests, protocol

log = logging.getLogger("vmagent.server")


class _Server(asyncssh.SSHServer):
    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._peer = conn.get_extra_info("peername")

    def connection_lost(self, exc: Exception | None) -> None:
        if exc:
            log.info("connection from %s lost: %s", getattr(self, "_peer", "?"), exc)

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False


async def _session(process: asyncssh.SSHServerProcess[str], agent: converge.Agent) -> None:
    try:
        request = protocol.request_in_command(process.command or "")
        if request is not None:
            # One request given as the command itself (e.g. `ansible -m raw`): answer it and close.
            process.stdout.write(protocol.encode(await asyncio.to_thread(protocol.handle, request, agent)))
            return
        async for line in _lines(process.stdin):
            if line is None:
                process.stdout.write(protocol.encode(protocol.TOO_LONG))
                continue
            if not line.strip():
                continue
            if _is_status(line):
                resp = protocol.handle(line, agent)
            else:
                resp = await asyncio.to_thread(protocol.handle, line, agent)
            process.stdout.write(protocol.encode(resp))
    except (asyncssh.BreakReceived, asyncssh.TerminalSizeChanged, asyncssh.ConnectionLost):
        pass
    finally:
        process.exit(0)


async def _lines(reader: Any) -> AsyncIterator[str | None]:
    """Request lines of at most MAX_LINE characters; a longer one is ``None`` (answered as too
    long) and the rest of it is dropped as it arrives, never held whole."""
    buf = ""
    skipping = False
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            if buf and not skipping:
                yield buf
            return
        buf += chunk
        while True:
            nl = buf.find("\n")
            if nl < 0:
                break
            line, buf = buf[:nl], buf[nl + 1:]
            if skipping:
                skipping = False
                continue
            yield line if len(line) <= manifests.MAX_LINE else None
        if len(buf) > manifests.MAX_LINE:
            if not skipping:
                yield None
            skipping = True
            buf = ""


def _is_status(line: str) -> bool:
    return '"op": "status"' in line or '"op":"status"' in line


async def serve(agent: converge.Agent, host: str, port: int, host_key: str, authorized_keys: str,
                ready_file: str | None = None) -> None:
    server = await asyncssh.create_server(
        _Server, host, port,
        server_host_keys=[host_key],
        authorized_client_keys=authorized_keys,
        process_factory=lambda p: _session(p, agent),
        allow_pty=False, agent_forwarding=False, x11_forwarding=False, allow_scp=False,
        sftp_factory=None, encoding="utf-8", keepalive_interval=15,
    )
    bound = server.sockets[0].getsockname()[1]
    log.info("fed-agent serving zone %s on %s:%d", agent.config.zone, host, bound)
    if ready_file:
        from vmagent import state

        state.write_atomic(ready_file, f"{bound}\n".encode(), mode=0o644)
    loop_task = asyncio.create_task(agent.run(), name="converge")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: closing the SSH endpoint, leaving app instances running")
    server.close()
    agent.stop()
    await asyncio.wait_for(loop_task, timeout=10)
