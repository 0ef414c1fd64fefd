"""Dynatrace's metrics API v2 (``GET /api/v2/metrics/query``), as Flagger queries it.

Parameters ``metricSelector`` (the query), ``resolution=Inf``, ``from``/``to`` in Unix
milliseconds (ten metric intervals back); header ``Authorization: Api-Token <dynatrace_token>``.
Answer: ``{"result": [{"data": [{"timestamps": [...], "values": [...]}]}]}``; the value is the
last data entry's first value. No result, null, NaN or an error answer is no data.
"""

from __future__ import annotations

import math
import re

from federation.core.spec import MetricProvider
from federation.metrics.backends import http, secrets
from federation.metrics.prometheus import NoData, Unreachable

_SAFE = re.compile(r"^[A-Za-z0-9_.:/\-]*$")


def escape(value: str) -> str:
    """A value in a metric selector: refused when it would change the selector's structure."""
    if not _SAFE.match(value):
        raise ValueError(f"value {value!r} cannot be put in a Dynatrace metric selector safely "
                         "(letters, digits and _ . : / - only)")
    return value


class Dynatrace:
    escape = staticmethod(escape)

    def __init__(self, provider: MetricProvider, store: secrets.Store, timeout: float, window: float) -> None:
        if provider.address is None:
            raise NoData("dynatrace: the provider needs an address (https://<environment>.live.dynatrace.com)")
        self.base = provider.address
        self.ref = provider.secret_ref.name if provider.secret_ref else "dynatrace"
        self.store = store
        self.verify = not provider.insecure_skip_verify
        self.extra = http.extra_headers(provider)
        self.timeout = timeout
        self.span_ms = int(10 * window * 1000)

    async def scalar(self, query: str, at: float) -> float:
        token = self.store.require(self.ref, "dynatrace_token", "dynatrace")
        to = int(at * 1000)
        params = {"metricSelector": query, "resolution": "Inf", "from": str(to - self.span_ms), "to": str(to)}
        r = await http.request("dynatrace", self.base, "GET", "/api/v2/metrics/query", timeout=self.timeout,
                               verify=self.verify, extra=self.extra, params=params, headers={"Authorization": f"Api-Token {token}"})
        try:
            body = r.json()
            data = body["result"][0]["data"] if body.get("result") else []
        except (ValueError, KeyError, TypeError, IndexError):
            raise Unreachable(f"dynatrace {self.base}: unexpected answer") from None
        if not data or not data[-1].get("values"):
            raise NoData("empty result")
        value = data[-1]["values"][0]
        if value is None:
            raise NoData("empty result")
        if math.isnan(float(value)):
            raise NoData("NaN result")
        return float(value)
