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

from federation import resolve
from federation.core import durations, outbound
from federation.core.spec import Webhook
from federation.core.state import HookResult


def payload(hook: Webhook, name: str, namespace: str, phase: str, checksum: str = "") -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "phase": phase, "type": hook.type.value,
            "checksum": checksum, "metadata": dict(hook.metadata or {})}


async def call(hook: Webhook, body: dict[str, Any], policy: outbound.Policy | None = None) -> HookResult:
    """POST ``body`` to the hook, within the fleet's outbound ``policy``. The result carries only
    the status class or a short reason, never the answer's body (it goes into Git and the API)."""
    timeout = durations.parse(hook.timeout)
    why = await resolve.refused_async(policy, hook.url)
    if why is not None:
        return HookResult(False, f"refused by the outbound policy: {why}")
    last = ""
    for attempt in range(hook.retries + 1):
        try:
            async with resolve.client(policy, hook.url, timeout=timeout, verify=not hook.disable_tls) as c:
                r = await c.post(hook.url, json=body)
            if 200 <= r.status_code < 300:
                return HookResult(True, f"HTTP {r.status_code}")
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            text = outbound.redact(str(exc))[:200]
            last = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        if attempt < hook.retries:
            await asyncio.sleep(min(0.5 * 2 ** attempt, 5.0))
    return HookResult(False, last)


async def call_all(hooks: list[Webhook], name: str, namespace: str, phase: str,
                   checksum: str = "", policy: outbound.Policy | None = None) -> dict[str, HookResult]:
    results = await asyncio.gather(*[call(h, payload(h, name, namespace, phase, checksum), policy) for h in hooks])
    return {h.name: r for h, r in zip(hooks, results, strict=True)}


def event_type(severity: str) -> str:
    """Flagger's ``eventType``: the Kubernetes Event type of the event, ``Normal`` or ``Warning``."""
    return "Normal" if severity == "info" else "Warning"


async def send_event(hooks: list[Webhook], name: str, namespace: str, phase: str, severity: str,
                     message: str, policy: outbound.Policy | None = None) -> None:
    """Flagger's event payload; ``eventType`` is ``Normal`` for info, ``Warning`` for warn/error."""
    body_meta = {"eventMessage": message, "eventType": event_type(severity),
                 "timestamp": str(int(time.time() * 1000))}
    await asyncio.gather(*[call(h, {"name": name, "namespace": namespace, "phase": phase,
                                    "metadata": {**(h.metadata or {}), **body_meta}}, policy) for h in hooks])
