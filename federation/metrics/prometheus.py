"""The one owner of prometheus-api-client: one client per zone, auth from the Fleet, timeouts.

Synchronous library calls run in a thread pool sized for fan-out. Any failure — unreachable,
timeout, bad answer — becomes ``NoData`` with the reason, which the core treats as no data
(never a pass). Callers: ``metrics.analysis``, ``fedctl clusters``.
"""

from __future__ import annotations

import asyncio
import datetime
import math
import os
import re
import time
from pathlib import Path
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from federation import resolve
from federation.core import durations, outbound
from federation.core.spec import PrometheusSource
from federation.metrics.pool import SlowestFirst

# The client library is synchronous: queries run in threads. The default executor has only
# cpu+4 threads, which would queue a 20-zone analysis; this pool is sized for fan-out, and starts
# the query of the endpoint that answered slowest last time first (``metrics.pool``).
_POOL = SlowestFirst(128, "prometheus")


def _dt(ts: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC)


class NoData(Exception):
    """The query gave no usable answer; ``str()`` says why."""


class Unreachable(NoData):
    """The server itself failed (refused, timed out, answered an error): a broken backend, not
    missing traffic. ``str()`` names the endpoint, never the URL-encoded query."""


def _short(exc: Exception) -> str:
    """One short cause for a failed request: no URL, no encoded query, no exception chain."""
    if isinstance(exc, requests.Timeout):
        return "timed out"
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError):  # say why TLS failed (an unknown CA, say)
        m = re.search(r"\[SSL: [A-Z_]+\] ([^'\")(]+)", text)
        return f"SSL: {m.group(1).strip()}" if m else "SSL handshake failed"
    m = re.search(r"(refused by the outbound policy: .*?)(?:[\"']\)|$)", text)  # checked again at connect
    if m:
        return m.group(1).strip()[:300]
    m = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if m:
        return m.group(1).strip()
    if isinstance(exc, requests.ConnectionError):
        return "cannot connect"
    text = re.sub(r"(with url: )?/api/v1/\S*", "", text)
    text = re.sub(r"https?://\S+", "", text)
    return " ".join(text.split())[:200] or type(exc).__name__


def _secret(env: str | None, file: str | None) -> str | None:
    if env:
        return os.environ.get(env) or None
    if file:
        try:
            return Path(file).read_text().strip() or None
        except OSError as exc:
            raise NoData(f"cannot read {file}: {exc.strerror}") from None
    return None


# A backend's answer is untrusted: its body is read up to MAX_ANSWER bytes (more is an error, not
# a bigger buffer), every sample must have the shape of an instant-vector sample, every value must
# be a finite number within MAX_VALUE, and a query judged as one figure must return one series.
MAX_ANSWER = 8 * 1024 * 1024
MAX_VALUE = 1e15
MAX_SERIES = 10_000  # histogram buckets of one query


class AnswerTooLarge(requests.RequestException):
    """The backend's answer was larger than MAX_ANSWER bytes."""


def _bounded_body(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
    """A response hook (runs before requests reads the body): read at most MAX_ANSWER bytes."""
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > MAX_ANSWER:
        response.close()
        raise AnswerTooLarge(f"answer larger than {MAX_ANSWER // (1024 * 1024)} MiB")
    data = response.raw.read(MAX_ANSWER + 1, decode_content=True) if response.raw is not None else b""
    if len(data) > MAX_ANSWER:
        response.close()
        raise AnswerTooLarge(f"answer larger than {MAX_ANSWER // (1024 * 1024)} MiB")
    response._content = data
    response._content_consumed = True
    return response


def _number(raw: Any, what: str = "value") -> float:
    """A sample value as Prometheus encodes it (a string); anything not a finite, sane number is
    ``NoData`` — never a value a threshold could pass."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)) or (isinstance(raw, str) and len(raw) > 64):
        raise NoData(f"malformed answer: {what} is not a number")
    try:
        value = float(raw)
    except ValueError:
        raise NoData(f"malformed answer: {what} is not a number") from None
    if math.isnan(value):
        raise NoData("NaN result")
    if math.isinf(value):
        raise NoData(f"non-finite result ({raw})")
    if abs(value) > MAX_VALUE:
        raise NoData(f"result out of range ({value:g})")
    return value


def _sample(sample: Any) -> tuple[dict[str, Any], Any]:
    """(labels, raw value) of an instant-vector sample; ``NoData`` for any other shape."""
    if not isinstance(sample, dict) or not isinstance(sample.get("metric", {}), dict):
        raise NoData("malformed answer: not an instant vector (scalar, string or matrix result?)")
    value = sample.get("value")
    if not isinstance(value, list) or len(value) != 2:
        raise NoData("malformed answer: not an instant vector (scalar, string or matrix result?)")
    return sample.get("metric") or {}, value[1]


class Client:
    def __init__(self, source: PrometheusSource, policy: outbound.Policy | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.source = source
        self.headers = headers or {}  # sent with every query; the auth header wins over one of these
        self.policy = policy  # the fleet's outbound policy, checked before every query
        self.timeout = durations.parse(source.timeout)
        self._prom: PrometheusConnect | None = None
        self.latency = 0.0  # seconds its last query took (answered or not): the pool's priority

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await _POOL.run(self.latency, self._timed, fn, *args)

    def _timed(self, fn: Any, *args: Any) -> Any:
        start = time.monotonic()
        try:
            return fn(*args)
        finally:
            self.latency = time.monotonic() - start

    def _connect(self) -> PrometheusConnect:
        if self._prom is not None:
            return self._prom
        headers: dict[str, str] = {k: v for k, v in self.headers.items() if k.lower() != "authorization"}
        auth = None
        session = requests.Session()
        session.hooks["response"].append(_bounded_body)
        a = self.source.auth
        if a is not None:
            token = _secret(a.bearer_token_env, a.bearer_token_file)
            if token:
                headers["Authorization"] = f"Bearer {token}"
            if a.username:
                auth = (a.username, _secret(a.password_env, a.password_file) or "")
            if a.ca_file:
                session.verify = a.ca_file
        disable_ssl = bool(a and a.insecure_skip_verify)
        # One quick retry only: the analysis has its own deadline, and an unreachable server must
        # surface as no data within it rather than as a timeout.
        retry = Retry(total=1, backoff_factor=0.1, status_forcelist=(502, 503, 504),
                      allowed_methods=frozenset({"GET", "POST"}))
        self._prom = PrometheusConnect(url=self.source.url, headers=headers, disable_ssl=disable_ssl, auth=auth,
                                       session=session, timeout=self.timeout, retry=retry)
        if self.policy is not None:  # connections only to addresses the policy allows (checked at connect),
            session.mount(self.source.url, resolve.PinnedAdapter(self.policy, max_retries=retry))  # over its own
        return self._prom

    def _allowed(self) -> None:
        why = resolve.refused(self.policy, self.source.url)
        if why is not None:
            raise Unreachable(f"prometheus {outbound.redact(self.source.url)}: refused by the outbound policy: {why}")

    def _query(self, query: str, at: float | None = None) -> list[dict[str, Any]]:
        self._allowed()
        try:
            params = {"time": f"{at:.3f}"} if at is not None else None
            result = self._connect().custom_query(query, params=params)
        except (PrometheusApiClientException, requests.RequestException, ValueError, KeyError, TypeError) as exc:
            raise Unreachable(f"prometheus {outbound.redact(self.source.url)}: {_short(exc)}") from None
        if not isinstance(result, list):
            raise NoData("malformed answer: not an instant vector (scalar, string or matrix result?)")
        return result

    def scalar_sync(self, query: str, at: float | None = None) -> float:
        """A query returning one sample (evaluated at ``at``); empty, NaN, infinite, out of range,
        malformed or more than one series is ``NoData``."""
        result = self._query(query, at)
        if not result:
            raise NoData("empty result")
        samples = [_sample(x) for x in result[:MAX_SERIES]]  # a scalar or string result fails here
        if len(result) > 1:
            raise NoData(f"{len(result)} series where one is expected (aggregate the query with sum or avg)")
        return _number(samples[0][1])

    def buckets_sync(self, query: str, scale: float = 1.0, at: float | None = None) -> dict[float, float]:
        """A ``sum by (le)`` query as {upper bound: cumulative count}; any malformed or non-finite
        bucket makes the whole answer ``NoData``."""
        out: dict[float, float] = {}
        result = self._query(query, at)
        if len(result) > MAX_SERIES:
            raise NoData(f"{len(result)} buckets (more than {MAX_SERIES})")
        for sample in result:
            labels, raw = _sample(sample)
            le = labels.get("le")
            if le is None:
                continue
            if le in ("+Inf", "Inf", "inf", "+inf"):
                bound = math.inf
            else:
                bound = _number(le, "le") * scale
            if bound in out:
                raise NoData(f"bucket le={le} twice (the query is not summed by le alone)")
            out[bound] = _number(raw)
        if not out:
            raise NoData("empty result")
        return out

    def range_sync(self, query: str, start: float, end: float, step: float) -> list[float]:
        """Values of a one-series range query (NaN steps dropped); empty is ``NoData``."""
        self._allowed()
        try:
            result = self._connect().custom_query_range(
                query, start_time=_dt(start), end_time=_dt(end), step=f"{step:g}s")
        except (PrometheusApiClientException, requests.RequestException, ValueError, KeyError, TypeError) as exc:
            raise Unreachable(f"prometheus {outbound.redact(self.source.url)}: {_short(exc)}") from None
        if not isinstance(result, list) or not all(isinstance(x, dict) for x in result):
            raise NoData("malformed answer: not a matrix")
        if len(result) > 1:
            raise NoData(f"{len(result)} series where one is expected (aggregate the query with sum or avg)")
        values: list[float] = []
        for series in result:
            points = series.get("values", [])
            if not isinstance(points, list):
                raise NoData("malformed answer: not a matrix")
            for point in points:
                if not isinstance(point, list) or len(point) != 2:
                    raise NoData("malformed answer: not a matrix")
                try:
                    values.append(_number(point[1]))
                except NoData as exc:
                    if str(exc) != "NaN result":  # a NaN step (no requests then) is skipped
                        raise
        if not values:
            raise NoData("empty result")
        return values

    async def range(self, query: str, start: float, end: float, step: float) -> list[float]:
        return await asyncio.wait_for(self._run(self.range_sync, query, start, end, step),
                                      timeout=self.timeout + 1)

    async def scalar(self, query: str, at: float | None = None) -> float:
        return await asyncio.wait_for(self._run(self.scalar_sync, query, at), timeout=self.timeout + 1)

    async def buckets(self, query: str, scale: float = 1.0, at: float | None = None) -> dict[float, float]:
        return await asyncio.wait_for(self._run(self.buckets_sync, query, scale, at),
                                      timeout=self.timeout + 1)

    async def healthy(self) -> str | None:
        """None when the server answers a trivial query, else the reason."""
        try:
            await self.scalar("vector(1)")
            return None
        except (TimeoutError, NoData) as exc:
            return str(exc) or "timeout"
