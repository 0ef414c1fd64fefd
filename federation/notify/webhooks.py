"""Webhooks as Flagger calls them: POST JSON {name, namespace, phase, type, checksum, metadata}.

A gate passes on any 2xx answer. Each call has the hook's timeout and retries; a failure is a
``HookResult(ok=False)`` with the reason, never an exception. Event hooks get Flagger's event
payload (metadata eventMessage, eventType Normal|Warning, timestamp). Callers: the hub's rollout worker.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from federation.core import durations
from federation.core.spec import Webhook
from federation.core.state import HookResult


def payload(hook: Webhook, name: str, namespace: str, phase: str, checksum: str = "") -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "phase": phase, "type": hook.type.value,
            "checksum": checksum, "metadata": dict(hook.metadata or {})}


async def call(hook: Webhook, body: dict[str, Any]) -> HookResult:
    timeout = durations.parse(hook.timeout)
    last = ""
    for attempt in range(hook.retries + 1):
        try:
            async with httpx.AsyncClient(timeout=timeout, verify=not hook.disable_tls) as c:
                r = await c.post(hook.url, json=body)
            if 200 <= r.status_code < 300:
                return HookResult(True, f"HTTP {r.status_code}")
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if attempt < hook.retries:
            await asyncio.sleep(min(0.5 * 2 ** attempt, 5.0))
    return HookResult(False, last)


async def call_all(hooks: list[Webhook], name: str, namespace: str, phase: str,
                   checksum: str = "") -> dict[str, HookResult]:
    results = await asyncio.gather(*[call(h, payload(h, name, namespace, phase, checksum)) for h in hooks])
    return {h.name: r for h, r in zip(hooks, results, strict=True)}


def event_type(severity: str) -> str:
    """Flagger's ``eventType``: the Kubernetes Event type of the event, ``Normal`` or ``Warning``."""
    return "Normal" if severity == "info" else "Warning"


async def send_event(hooks: list[Webhook], name: str, namespace: str, phase: str, severity: str,
                     message: str) -> None:
    """Flagger's event payload; ``eventType`` is ``Normal`` for info, ``Warning`` for warn/error."""
    body_meta = {"eventMessage": message, "eventType": event_type(severity),
                 "timestamp": str(int(time.time() * 1000))}
    await asyncio.gather(*[call(h, {"name": name, "namespace": namespace, "phase": phase,
                                    "metadata": {**(h.metadata or {}), **body_meta}}) for h in hooks])
