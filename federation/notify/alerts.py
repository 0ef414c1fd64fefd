"""Notifications: Slack, Microsoft Teams, Discord and a generic JSON webhook, routed by severity.

Each ``analysis.alerts`` entry names a provider (``providerRef``, from the Fleet's
``alertProviders``) and the least severity it wants (info < warn < error). Provider URLs come
from the environment or a file and are never logged; generic webhooks can be signed with an HMAC
(``X-Federation-Signature: sha256=<hex>`` over the body). A failed notification is logged, never
fatal. Callers: the hub's rollout worker (for every ``Emit``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import httpx

from federation import resolve
from federation.core import outbound
from federation.core.spec import AlertProvider, FederatedCanary

log = logging.getLogger("federation.notify")
RANK = {"": 0, "info": 0, "warn": 1, "error": 2}
COLOURS = {"info": "#2e7d32", "warn": "#f9a825", "error": "#c62828"}


def _url(p: AlertProvider) -> str | None:
    if p.url_env:
        return os.environ.get(p.url_env) or None
    try:
        return Path(p.url_file or "").read_text().strip() or None
    except OSError:
        return None


def body(p: AlertProvider, rollout: str, phase: str, severity: str, reason: str, message: str) -> dict[str, Any]:
    title = f"{rollout}: {reason}"
    if p.type == "slack":
        out: dict[str, Any] = {"username": p.username, "text": title,
                               "attachments": [{"color": COLOURS.get(severity, "#999999"), "text": message,
                                                "fields": [{"title": "phase", "value": phase, "short": True},
                                                           {"title": "severity", "value": severity, "short": True}]}]}
        if p.channel:
            out["channel"] = p.channel
        return out
    if p.type == "msteams":
        return {"@type": "MessageCard", "@context": "https://schema.org/extensions", "summary": title,
                "themeColor": COLOURS.get(severity, "#999999").lstrip("#"), "title": title,
                "sections": [{"text": message, "facts": [{"name": "phase", "value": phase},
                                                         {"name": "severity", "value": severity}]}]}
    if p.type == "discord":
        return {"username": p.username, "content": title,
                "embeds": [{"description": message, "color": int(COLOURS.get(severity, "#999999").lstrip("#"), 16),
                            "fields": [{"name": "phase", "value": phase, "inline": True}]}]}
    return {"rollout": rollout, "phase": phase, "severity": severity, "reason": reason, "message": message,
            "timestamp": int(time.time())}


def signature(secret: str, payload: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


async def send(p: AlertProvider, payload: dict[str, Any], timeout: float = 10.0,
               policy: outbound.Policy | None = None) -> bool:
    url = _url(p)
    if url is None:
        log.warning("alert provider %s: no URL (set %s)", p.name, p.url_env or p.url_file)
        return False
    why = outbound.url_problem(url, user_ok=True) or await resolve.refused_async(policy, url)
    if why is not None:
        # Never the value itself: the URL is a secret (where it comes from, and why, only).
        log.warning("alert provider %s: the URL in %s is refused: %s", p.name, p.url_env or p.url_file, why)
        return False
    data = json.dumps(payload, sort_keys=True).encode()
    headers = {"Content-Type": "application/json"}
    if p.type == "generic" and p.hmac_secret_env:
        secret = os.environ.get(p.hmac_secret_env)
        if secret:
            headers["X-Federation-Signature"] = signature(secret, data)
    try:
        async with resolve.client(policy, url, timeout=timeout) as c:
            r = await c.post(url, content=data, headers=headers)
        if r.status_code >= 300:
            log.warning("alert provider %s answered HTTP %d", p.name, r.status_code)
            return False
        return True
    except httpx.HTTPError as exc:
        log.warning("alert provider %s unreachable: %s", p.name, type(exc).__name__)  # the URL may hold a secret
        return False


async def notify(providers: list[AlertProvider], canary: FederatedCanary, phase: str, severity: str,
                 reason: str, message: str, policy: outbound.Policy | None = None) -> list[str]:
    """Send to every alert of the canary whose severity threshold this event meets; names sent to."""
    by_name = {p.name: p for p in providers}
    sends = []
    for alert in canary.spec.analysis.alerts:
        if RANK.get(severity, 0) < RANK.get(alert.severity, 0):
            continue
        p = by_name.get(alert.provider_ref.name)
        if p is None:
            log.warning("%s: alert %s names unknown provider %s", canary.key, alert.name, alert.provider_ref.name)
            continue
        sends.append((p.name, send(p, body(p, canary.key, phase, severity, reason, message), policy=policy)))
    results = await asyncio.gather(*[s for _, s in sends])
    return [name for (name, _), ok in zip(sends, results, strict=True) if ok]
