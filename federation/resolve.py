"""The outbound policy applied to a request about to be sent: resolve the URL's host, then ask
``core.outbound.Policy.check`` about every address it resolves to. Callers: ``notify`` (webhooks,
alert providers), ``metrics`` (Prometheus clients and the other backends).

The check happens twice: once before the request (``refused``: a clear reason, no connection
attempted), and again where the connection is made (``client`` for httpx, ``PinnedAdapter`` for
requests): the name is resolved once more, the answer checked, and the socket connected to a
checked address — never to whatever a second lookup returns, so a name whose answer changes
between check and connect (DNS rebinding) reaches only an address the policy allowed. TLS still
verifies the certificate against the name. Where an HTTP proxy from the environment carries the
request (``HTTPS_PROXY``...), the proxy resolves the name: only the first check applies.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import socket
import ssl
import urllib.parse
import urllib.request
from typing import Any

import httpcore
import httpx
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError

from federation.core import outbound

# The policy of the backend query running in this task (metrics backends set it around a query,
# their HTTP helper builds a pinned client from it).
POLICY: contextvars.ContextVar[outbound.Policy | None] = contextvars.ContextVar("outbound_policy", default=None)


def _target(url: str) -> tuple[str, int] | str:
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "not a valid URL"
    if not parts.hostname:
        return "has no host"
    return parts.hostname, port


def refused(policy: outbound.Policy | None, url: str) -> str | None:
    """Why ``url`` may not be requested (blocking: resolves the host), else None."""
    if policy is None:
        return None
    target = _target(url)
    if isinstance(target, str):
        return target
    host, port = target
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        return f"{host} does not resolve ({exc.strerror or exc})"
    return policy.check(host, port, [str(i[4][0]) for i in infos])


async def refused_async(policy: outbound.Policy | None, url: str) -> str | None:
    """``refused`` without blocking the event loop."""
    if policy is None:
        return None
    target = _target(url)
    if isinstance(target, str):
        return target
    host, port = target
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        return f"{host} does not resolve ({exc.strerror or exc})"
    return policy.check(host, port, [str(i[4][0]) for i in infos])


def _checked(policy: outbound.Policy, host: str, port: int, infos: list[Any]) -> str:
    """The address to connect to: the first one the lookup gave, after the policy allowed them all."""
    addresses = [str(i[4][0]) for i in infos]
    why = policy.check(host, port, addresses)
    if why is not None:
        raise PermissionError(f"refused by the outbound policy: {why}")
    return addresses[0]


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, policy: outbound.Policy) -> None:
        self.policy = policy
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
            address = _checked(self.policy, host, port, infos)
        except (OSError, PermissionError) as exc:
            raise httpcore.ConnectError(str(exc) if isinstance(exc, PermissionError) else
                                        f"{host} does not resolve ({exc})") from None
        return await self.inner.connect_tcp(address, port, timeout, local_address, socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not outbound requests")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def _proxied(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    scheme = urllib.parse.urlsplit(url).scheme
    return scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(host)


@functools.lru_cache(maxsize=32)
def _tls(verify: bool | str, version: int) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=verify) if isinstance(verify, str) else httpx.create_ssl_context(verify)


def tls(verify: bool | str) -> ssl.SSLContext:
    """The TLS context for ``verify`` (True: the system's CAs, False: none, a path: that CA
    bundle), built once and shared: building one parses a CA bundle, tens of milliseconds of CPU,
    and every query of every analysis makes a client. A bundle replaced on disk is read again."""
    version = 0
    if isinstance(verify, str):
        try:
            version = os.stat(verify).st_mtime_ns
        except OSError:
            pass  # the context's load then says what is wrong with the path
    return _tls(verify, version)


def client(policy: outbound.Policy | None, url: str, *, timeout: float, verify: bool | str = True) -> httpx.AsyncClient:
    """An httpx client for requests to ``url`` whose connections go only to addresses ``policy``
    allows (checked where the socket is made); a plain client without a policy or behind a proxy."""
    context = tls(verify)
    if policy is None or _proxied(url):
        return httpx.AsyncClient(timeout=timeout, verify=context)
    transport = httpx.AsyncHTTPTransport(verify=context)
    transport._pool = httpcore.AsyncConnectionPool(ssl_context=context, network_backend=_PinnedBackend(policy))
    return httpx.AsyncClient(timeout=timeout, transport=transport)


class _Pinned:
    """urllib3 connection mixin: resolve, check, connect to the checked address (``_dns_host``)."""

    policy: outbound.Policy
    host: str
    port: int
    _dns_host: str

    def _new_conn(self) -> socket.socket:
        try:
            infos = socket.getaddrinfo(self.host, self.port, proto=socket.IPPROTO_TCP)
            self._dns_host = _checked(self.policy, self.host, self.port, infos)
        except (OSError, PermissionError) as exc:
            raise NewConnectionError(self, str(exc)) from None  # type: ignore[arg-type]
        return super()._new_conn()  # type: ignore[misc, no-any-return]


class PinnedAdapter(HTTPAdapter):
    """A requests adapter whose connections go only to addresses ``policy`` allows."""

    def __init__(self, policy: outbound.Policy, **kwargs: Any) -> None:
        self.policy = policy
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        http = type("PinnedHTTPConnection", (_Pinned, HTTPConnection), {"policy": self.policy})
        https = type("PinnedHTTPSConnection", (_Pinned, HTTPSConnection), {"policy": self.policy})
        self.poolmanager.pool_classes_by_scheme = {
            "http": type("PinnedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
            "https": type("PinnedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https})}
