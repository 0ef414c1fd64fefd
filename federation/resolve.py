"""The outbound policy applied to a request about to be sent: resolve the URL's host, then ask
``core.outbound.Policy.check`` about every address it resolves to. Callers: ``notify`` (webhooks,
alert providers), ``metrics`` (Prometheus clients).

Limitation: the client resolves the name again when it connects; a name whose answer changes
between the two (DNS rebinding) is not caught. Use networks rather than names in the allow list
where that matters.
"""

from __future__ import annotations

import asyncio
import socket
import urllib.parse

from federation.core import outbound


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
