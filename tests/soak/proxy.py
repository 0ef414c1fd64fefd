"""A loopback TCP proxy between the hub and one zone's agent, with faults: delay, stall, reset.

``delay``: every chunk waits before it is forwarded (a slow link). ``stall``: nothing is forwarded
until the mode clears (a link dropping every packet; TCP retransmits, so nothing is lost once it
heals). ``refusing``: new connections are reset at once (a remote that is down). ``reset()``: every open connection is closed with a RST (SO_LINGER 0) on both sides.
asyncio only; no netem. Callers: ``tests.soak.chaos``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct


class Proxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.delay = 0.0
        self.refusing = False  # new connections are reset at once (the service behind is unreachable)
        self._healed = asyncio.Event()
        self._healed.set()
        self._server: asyncio.Server | None = None
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def stall(self, on: bool) -> None:
        if on:
            self._healed.clear()
        else:
            self._healed.set()

    def heal(self) -> None:
        self.delay = 0.0
        self.refusing = False
        self._healed.set()

    def reset(self) -> int:
        """RST every open connection; how many there were."""
        n = 0
        for a, b in list(self._conns):
            n += 1
            for w in (a, b):
                sock = w.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                w.transport.abort()
        self._conns.clear()
        return n

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.refusing:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return
        try:
            up_r, up_w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.upstream_port), 5)
        except (OSError, TimeoutError):
            writer.transport.abort()
            return
        pair = (writer, up_w)
        self._conns.add(pair)
        try:
            await asyncio.gather(self._pump(reader, up_w), self._pump(up_r, writer))
        finally:
            self._conns.discard(pair)
            for w in pair:
                w.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                    return
                await self._healed.wait()
                if self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
        except (OSError, ConnectionError, asyncio.IncompleteReadError):
            writer.transport.abort()

    async def close(self) -> None:
        self.heal()
        self.reset()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)
