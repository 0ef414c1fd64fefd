"""Datadog's metrics query API (``GET /api/v1/query``), as Flagger queries it.

Request: ``query``, ``from`` and ``to`` (Unix seconds; the window is ten metric intervals, as
Flagger's), headers ``DD-API-KEY`` and ``DD-APPLICATION-KEY`` from the secret's
``datadog_api_key`` and ``datadog_application_key``. Answer: ``{"series": [{"pointlist":
[[ms, value], ...]}]}``; the value is the first series' oldest non-null point (the newest bucket is
usually incomplete). No series, only nulls, NaN, an error answer or a 429 is no data.
"""

from __future__ import annotations

import math
import re

from federation.core.spec import MetricProvider
from federation.metrics.backends import http, secrets
from federation.metrics.prometheus import NoData, Unreachable

DEFAULT = "https://api.datadoghq.com"
_TAG_VALUE = re.compile(r"^[A-Za-z0-9_.:/\-]*$")


def escape(value: str) -> str:
    """A tag value or metric name part: refused when it would change the query's structure."""
    if not _TAG_VALUE.match(value):
        raise ValueError(f"value {value!r} cannot be put in a Datadog query safely "
                         "(letters, digits and _ . : / - only)")
    return value


class Datadog:
    escape = staticmethod(escape)

    def __init__(self, provider: MetricProvider, store: secrets.Store, timeout: float, window: float) -> None:
        self.base = provider.address or DEFAULT
        self.verify = not provider.insecure_skip_verify
        self.extra = http.extra_headers(provider)
        self.timeout = timeout
        self.span = 10 * window
        ref = provider.secret_ref.name if provider.secret_ref else "datadog"
        self.ref, self.store = ref, store

    async def scalar(self, query: str, at: float) -> float:
        headers = {"DD-API-KEY": self.store.require(self.ref, "datadog_api_key", "datadog"),
                   "DD-APPLICATION-KEY": self.store.require(self.ref, "datadog_application_key", "datadog"),
                   "Accept": "application/json"}
        params = {"query": query, "from": str(int(at - self.span)), "to": str(int(at))}
        r = await http.request("datadog", self.base, "GET", "/api/v1/query", timeout=self.timeout,
                               verify=self.verify, extra=self.extra, params=params, headers=headers)
        try:
            body = r.json()
        except ValueError:
            raise Unreachable(f"datadog {self.base}: answer is not JSON") from None
        if not isinstance(body, dict):
            raise Unreachable(f"datadog {self.base}: unexpected answer")
        if body.get("status") == "error" or body.get("error"):
            raise Unreachable(f"datadog {self.base}: {str(body.get('error') or 'query error')[:200]}")
        series = body.get("series") or []
        if not series:
            raise NoData("empty result")
        for point in series[0].get("pointlist") or []:
            if isinstance(point, list) and len(point) == 2 and point[1] is not None:
                value = float(point[1])
                if math.isnan(value):
                    raise NoData("NaN result")
                return value
        raise NoData("empty result")
