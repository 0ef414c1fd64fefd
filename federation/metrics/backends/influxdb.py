"""InfluxDB 2's query API with Flux (``POST /api/v2/query?org=ORG``), as Flagger queries it.

Headers ``Authorization: Token <token>``, ``Content-Type: application/vnd.flux``,
``Accept: application/csv``; token and org from the secret's ``token`` and ``org``. Answer:
annotated CSV (``#`` annotation rows, a header row with ``_value``, then records, tables apart by
blank lines); the value is the first record's ``_value``. No record, an empty or NaN value, or an
error answer (``{"code": ..., "message": ...}``) is no data.
"""

from __future__ import annotations

import csv
import io
import math

from federation.metrics.backends import http
from federation.metrics.prometheus import NoData, Unreachable


def escape(value: str) -> str:
    """The body of a Flux double-quoted string: backslash, quote and ``${`` interpolation escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${").replace("\n", "\\n")


def first_value(text: str) -> str | None:
    """``_value`` of the first record of an annotated CSV answer (None when there is none)."""
    header: list[str] | None = None
    for row in csv.reader(io.StringIO(text)):
        if not row or all(not c for c in row):
            header = None  # a blank line ends a table; the next one repeats its header
            continue
        if row[0].startswith("#"):
            continue
        if header is None:
            header = row
            continue
        if "_value" in header:
            return row[header.index("_value")]
    return None


class InfluxDB(http.Addressed):
    kind = "influxdb"
    escape = staticmethod(escape)

    async def scalar(self, query: str, at: float) -> float:
        headers = {"Content-Type": "application/vnd.flux", "Accept": "application/csv"}
        org = ""
        if self.ref is not None:  # read at every query: a rotated secret is picked up
            headers["Authorization"] = f"Token {self.store.require(self.ref, 'token', 'influxdb')}"
            org = self.store.require(self.ref, "org", "influxdb")
        r = await http.request("influxdb", self.base, "POST", "/api/v2/query", timeout=self.timeout,
                               verify=self.verify, extra=self.extra, params={"org": org} if org else None,
                               headers=headers, content=query.encode())
        raw = first_value(r.text)
        if raw is None or raw == "":
            raise NoData("empty result")
        try:
            value = float(raw)
        except ValueError:
            raise Unreachable(f"influxdb {self.base}: _value {raw[:40]!r} is not a number") from None
        if math.isnan(value):
            raise NoData("NaN result")
        return value
