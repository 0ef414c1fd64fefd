"""Amazon CloudWatch ``GetMetricData``, as Flagger queries it, over the AWS JSON 1.0 protocol.

The template's query is the JSON list of ``MetricDataQueries`` (Flagger's format); the window is
ten metric intervals back, ``MaxDatapoints`` 20; the value is the first result's first value
(CloudWatch lists the newest first). ``POST /`` to ``address`` or
``https://monitoring.<region>.amazonaws.com`` with ``X-Amz-Target:
GraniteServiceVersion20100801.GetMetricData``, signed with SigV4 (service ``monitoring``).
Credentials: the secret's ``aws_access_key_id``, ``aws_secret_access_key`` (and
``aws_session_token``), else ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``.
No result, no values, NaN, an error or a throttled answer is no data.
"""

from __future__ import annotations

import datetime
import json
import math
import os
from typing import Any
from urllib.parse import urlsplit

from federation.core.spec import MetricProvider
from federation.metrics.backends import http, secrets, sigv4
from federation.metrics.prometheus import NoData, Unreachable

TARGET = "GraniteServiceVersion20100801.GetMetricData"


def escape(value: str) -> str:
    """The body of a JSON string."""
    return json.dumps(value)[1:-1]


class CloudWatch:
    escape = staticmethod(escape)

    def __init__(self, provider: MetricProvider, store: secrets.Store, timeout: float, window: float) -> None:
        if not provider.region:
            raise NoData("cloudwatch: the provider needs a region")
        self.region = provider.region
        self.base = provider.address or f"https://monitoring.{self.region}.amazonaws.com"
        self.verify = not provider.insecure_skip_verify
        self.extra = http.extra_headers(provider)
        self.timeout = timeout
        self.span = 10 * window
        self.ref = provider.secret_ref.name if provider.secret_ref else None
        self.store = store

    def _credentials(self) -> tuple[str, str, str | None]:
        if self.ref is not None:
            return (self.store.require(self.ref, "aws_access_key_id", "cloudwatch"),
                    self.store.require(self.ref, "aws_secret_access_key", "cloudwatch"),
                    self.store.value(self.ref, "aws_session_token"))
        key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not key or not secret:
            raise NoData("cloudwatch: no credentials (give the provider a secretRef with aws_access_key_id and "
                         "aws_secret_access_key, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")
        return key, secret, os.environ.get("AWS_SESSION_TOKEN") or None

    async def scalar(self, query: str, at: float) -> float:
        try:
            queries = json.loads(query)
        except json.JSONDecodeError as exc:
            raise NoData(f"cloudwatch: the query is not a JSON list of MetricDataQueries ({exc.msg})") from None
        if not isinstance(queries, list) or not queries:
            raise NoData("cloudwatch: the query is not a JSON list of MetricDataQueries")
        body = json.dumps({"MetricDataQueries": queries, "StartTime": int(at - self.span), "EndTime": int(at),
                           "MaxDatapoints": 20}).encode()
        key, secret, token = self._credentials()
        amz_date = datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        url = urlsplit(self.base)
        headers = {"host": url.netloc, "x-amz-date": amz_date, "x-amz-target": TARGET,
                   "content-type": "application/x-amz-json-1.0"}
        if token:
            headers["x-amz-security-token"] = token
        headers["authorization"] = sigv4.authorization("POST", url.path or "/", [], headers, body,
                                                       access_key=key, secret_key=secret, region=self.region,
                                                       service="monitoring", amz_date=amz_date)
        r = await http.request("cloudwatch", self.base, "POST", "", timeout=self.timeout, verify=self.verify, extra=self.extra,
                               headers={k: v for k, v in headers.items() if k != "host"}, content=body)
        try:
            answer: Any = r.json()
        except ValueError:
            raise Unreachable(f"cloudwatch {self.base}: answer is not JSON") from None
        results = answer.get("MetricDataResults") if isinstance(answer, dict) else None
        if not results:
            raise NoData("empty result")
        values = results[0].get("Values") or []
        if not values or values[0] is None:
            raise NoData("empty result")
        value = float(values[0])
        if math.isnan(value):
            raise NoData("NaN result")
        return value
