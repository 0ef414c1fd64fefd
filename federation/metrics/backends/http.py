"""One HTTP request to a metric backend, its failures mapped to ``Unreachable`` in one line:
timeouts, refused connections, TLS, rate limits (429, with when to retry) and error answers (the
backend's own message, shortened). Never the URL's query string, never a header."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx

from federation import resolve
from federation.core.spec import MetricProvider
from federation.metrics.prometheus import NoData, Unreachable

if TYPE_CHECKING:
    from federation.metrics.backends.secrets import Store


def _message(r: httpx.Response) -> str:
    try:
        body: Any = r.json()
    except ValueError:
        return " ".join(r.text.split())[:200]
    if isinstance(body, dict):
        for key in ("errors", "error", "message"):
            v = body.get(key)
            if isinstance(v, dict) and v.get("message"):  # {"error": {"code": ..., "message": ...}}
                return str(v["message"])[:200]
            if v:
                return "; ".join(map(str, v))[:200] if isinstance(v, list) else str(v)[:200]
    return json.dumps(body)[:200]


class Addressed:
    """What a backend at the template's own ``address`` keeps (Graphite, InfluxDB): where, TLS
    verification, the provider's extra headers, the timeout and the secret to read at each query."""

    kind = ""

    def __init__(self, provider: MetricProvider, store: Store, timeout: float) -> None:
        if provider.address is None:
            raise NoData(f"{self.kind}: the provider needs an address")
        self.base = provider.address
        self.verify = not provider.insecure_skip_verify
        self.extra = extra_headers(provider)
        self.timeout = timeout
        self.ref = provider.secret_ref.name if provider.secret_ref else None
        self.store = store


def extra_headers(provider: MetricProvider) -> dict[str, str]:
    """The provider's ``headers`` (Flagger: name -> values), sent with every request to it."""
    return {k: ", ".join(v) for k, v in (provider.headers or {}).items()}


async def request(name: str, base: str, method: str, path: str, *, timeout: float, verify: bool = True,
                  extra: dict[str, str] | None = None,
                  params: dict[str, str] | list[tuple[str, str]] | None = None, headers: dict[str, str] | None = None,
                  content: bytes | None = None, auth: tuple[str, str] | None = None) -> httpx.Response:
    where = f"{name} {base}"
    own = headers or {}
    taken = {k.lower() for k in own}  # the backend's own (auth) headers win, whatever the case
    headers = {**{k: v for k, v in (extra or {}).items() if k.lower() not in taken}, **own}
    pairs: list[tuple[str, str | int | float | bool | None]] = list(
        params.items() if isinstance(params, dict) else params or [])
    try:
        async with resolve.client(resolve.POLICY.get(), base, timeout=timeout, verify=verify) as c:
            r = await c.request(method, base.rstrip("/") + path, params=httpx.QueryParams(pairs), headers=headers, content=content,
                                auth=auth)
    except httpx.TimeoutException:
        raise Unreachable(f"{where}: timed out") from None
    except httpx.ConnectError as exc:
        text = str(exc)
        why = "TLS: " + text.split("]")[-1].strip() if "SSL" in text or "certificate" in text else "cannot connect"
        if "refused by the outbound policy" in text:  # checked again where the socket is made
            why = text[text.index("refused by the outbound policy"):][:300]
        raise Unreachable(f"{where}: {why}") from None
    except httpx.HTTPError as exc:
        raise Unreachable(f"{where}: {type(exc).__name__}") from None
    if r.status_code == 429:
        after = r.headers.get("Retry-After") or r.headers.get("X-RateLimit-Reset")
        raise Unreachable(f"{where}: rate limited (HTTP 429{f', retry in {after}s' if after else ''})")
    if r.status_code == 400 and "Throttl" in r.text[:500]:  # AWS: {"__type": "...Throttling...", ...}
        raise Unreachable(f"{where}: rate limited (throttled): {_message(r)}")
    if r.status_code in (401, 403):
        raise Unreachable(f"{where}: credentials refused (HTTP {r.status_code}): {_message(r)}")
    if r.status_code >= 400:
        raise Unreachable(f"{where}: HTTP {r.status_code}: {_message(r)}")
    return r
