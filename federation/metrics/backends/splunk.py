"""Splunk Observability Cloud (SignalFx): a SignalFlow program run over SignalFlow's HTTP interface.

Flagger runs the program over SignalFlow's WebSocket; the same computation over HTTP is
``POST /v2/signalflow/execute?start=&stop=&immediate=true`` with the program as the
``text/plain`` body and the token in ``X-SF-Token``; the answer is Server-Sent Events
(``text/event-stream``): ``data`` messages carry ``{"data": [{"tsId", "value"}, ...]}``,
``control-message`` ones ``END_OF_CHANNEL`` or ``CHANNEL_ABORT``, ``error`` ones the program's
error. As Flagger: the address is required (``https://api.<realm>.signalfx.com`` is turned into
the stream host ``stream.<realm>``, ``wss://`` into ``https://``), the token is the secret's
``sf_token_key``, the window is ten metric intervals back, the value is the last non-null point,
and more than one time series is an error. No value, NaN, an error message or an aborted
channel is no data.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from federation.core.spec import MetricProvider
from federation.metrics.backends import http, secrets
from federation.metrics.prometheus import NoData, Unreachable


def stream_base(address: str) -> str:
    """The SignalFlow stream host for a configured address (Flagger's api -> stream rewrite)."""
    base = re.sub(r"^wss://", "https://", re.sub(r"^ws://", "http://", address.rstrip("/")))
    return re.sub(r"^(https?://)api\.", r"\1stream.", base)


def escape(value: str) -> str:
    """A value inside a SignalFlow string literal ('...' or "...")."""
    if any(c in value for c in "'\"\\\n\r"):
        raise ValueError(f"value {value!r} cannot be put in a SignalFlow string safely (quotes, backslashes "
                         "and newlines are refused)")
    return value


def events(text: str) -> list[tuple[str, str]]:
    """Server-Sent Events as (event, data) pairs; data lines of one event joined by newlines."""
    out: list[tuple[str, str]] = []
    for block in re.split(r"\r?\n\r?\n", text):
        name, data = "message", []
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        if data:
            out.append((name, "\n".join(data)))
    return out


class Splunk:
    escape = staticmethod(escape)

    def __init__(self, provider: MetricProvider, store: secrets.Store, timeout: float, window: float) -> None:
        if provider.address is None:
            raise NoData("splunk: the provider has no address (https://api.<realm>.signalfx.com)")
        self.base = stream_base(str(provider.address))
        self.verify = not provider.insecure_skip_verify
        self.extra = http.extra_headers(provider)
        self.timeout = timeout
        self.span_ms = int(10 * window * 1000)
        self.ref = provider.secret_ref.name if provider.secret_ref else "splunk"
        self.store = store

    async def scalar(self, query: str, at: float) -> float:
        headers = {"X-SF-Token": self.store.require(self.ref, "sf_token_key", "splunk"),
                   "Content-Type": "text/plain", "Accept": "text/event-stream"}
        stop = int(at * 1000)
        params = {"start": str(stop - self.span_ms), "stop": str(stop), "immediate": "true"}
        r = await http.request("splunk", self.base, "POST", "/v2/signalflow/execute", timeout=self.timeout,
                               verify=self.verify, extra=self.extra, params=params, headers=headers,
                               content=query.encode())
        points: list[tuple[str, float]] = []
        for name, data in events(r.text):
            try:
                msg: Any = json.loads(data)
            except ValueError:
                raise Unreachable(f"splunk {self.base}: a {name} message is not JSON") from None
            if not isinstance(msg, dict):
                continue
            kind = msg.get("type") or name
            if kind == "error" or name == "error":
                why = msg.get("message") or msg.get("errors") or msg.get("error") or "program error"
                raise Unreachable(f"splunk {self.base}: {str(why)[:200]}")
            if kind == "control-message" and msg.get("event") == "CHANNEL_ABORT":
                info = msg.get("abortInfo") or {}
                raise Unreachable(f"splunk {self.base}: computation aborted: "
                                  f"{str(info.get('sf_job_abortReason') or info or 'no reason given')[:200]}")
            if kind == "data":
                for p in msg.get("data") or []:
                    if isinstance(p, dict) and p.get("value") is not None:
                        points.append((str(p.get("tsId")), float(p["value"])))
        if not points:
            raise NoData("empty result")
        if len({ts for ts, _ in points}) > 1:
            raise NoData("the program returned more than one time series (Flagger needs exactly one)")
        value = points[-1][1]
        if math.isnan(value):
            raise NoData("NaN result")
        return value
