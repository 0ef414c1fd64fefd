"""Graphite's render API (``GET /render?target=...&format=json``), as Flagger queries it.

The template's query is the render URL's query string (``target=...``, whitespace collapsed);
``format=json`` is added. Basic auth from the secret's ``username`` and ``password``. Answer:
``[{"target": ..., "datapoints": [[value, ts], ...]}]``; the value is the last non-null point.
No series, only nulls, NaN or an error answer is no data.
"""

from __future__ import annotations

import math
import re
from urllib.parse import parse_qsl

from federation.metrics.backends import http
from federation.metrics.prometheus import NoData, Unreachable

_NODE = re.compile(r"^[A-Za-z0-9_\-]*$")


def escape(value: str) -> str:
    """A path node (or a function argument like an interval): refused when it holds a dot, a
    wildcard, a comma, a bracket or '&', which would change what is selected or sent."""
    if not _NODE.match(value):
        raise ValueError(f"value {value!r} cannot be put in a Graphite query safely (letters, digits, _ and - only)")
    return value


class Graphite(http.Addressed):
    kind = "graphite"
    escape = staticmethod(escape)

    async def scalar(self, query: str, at: float) -> float:
        auth = None
        if self.ref is not None:  # read at every query: a rotated secret is picked up
            auth = (self.store.require(self.ref, "username", "graphite"),
                    self.store.require(self.ref, "password", "graphite"))
        params = [(k, v) for k, v in parse_qsl(" ".join(query.split()), keep_blank_values=True) if k != "format"]
        if not any(k == "target" for k, _ in params):
            raise NoData("graphite: the query needs target=...")
        params.append(("format", "json"))
        r = await http.request("graphite", self.base, "GET", "/render", timeout=self.timeout, verify=self.verify, extra=self.extra,
                               params=params, auth=auth)
        try:
            body = r.json()
        except ValueError:
            raise Unreachable(f"graphite {self.base}: answer is not JSON") from None
        value: float | None = None
        for series in body if isinstance(body, list) else []:
            for point in series.get("datapoints") or []:
                if isinstance(point, list) and point and point[0] is not None:
                    value = float(point[0])
        if value is None:
            raise NoData("empty result")
        if math.isnan(value):
            raise NoData("NaN result")
        return value
