"""The one owner of prometheus-api-client: one client per zone, auth from the Fleet, timeouts.

Synchronous library calls run in a thread pool sized for fan-out. Any failure — unreachable,
timeout, bad answer — becomes ``NoData`` with the reason, which the core treats as no data
(never a pass). Callers: ``metrics.analysis``, ``fedctl clusters``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import math
import os
import re
from pathlib import Path
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from federation.core import durations
from federation.core.spec import PrometheusSource

# The client library is synchronous: queries run in threads. The default executor has only
# cpu+4 threads, which would queue a 20-zone analysis; this pool is sized for fan-out.
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="prometheus")


async def _run(fn: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(_POOL, fn, *args)


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


class Client:
    def __init__(self, source: PrometheusSource) -> None:
        self.source = source
        self.timeout = durations.parse(source.timeout)
        self._prom: PrometheusConnect | None = None

    def _connect(self) -> PrometheusConnect:
        if self._prom is not None:
            return self._prom
        headers: dict[str, str] = {}
        auth = None
        session = requests.Session()
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
        return self._prom

    def _query(self, query: str, at: float | None = None) -> list[dict[str, Any]]:
        try:
            params = {"time": f"{at:.3f}"} if at is not None else None
            result = self._connect().custom_query(query, params=params)
        except (PrometheusApiClientException, requests.RequestException, ValueError) as exc:
            raise Unreachable(f"prometheus {self.source.url}: {_short(exc)}") from None
        if not isinstance(result, list):
            raise Unreachable(f"prometheus {self.source.url}: unexpected answer")
        return result

    def scalar_sync(self, query: str, at: float | None = None) -> float:
        """A query returning one sample (evaluated at ``at``); empty or NaN is ``NoData``."""
        result = self._query(query, at)
        if not result:
            raise NoData("empty result")
        value = float(result[0]["value"][1])
        if math.isnan(value):
            raise NoData("NaN result")
        return value

    def buckets_sync(self, query: str, scale: float = 1.0, at: float | None = None) -> dict[float, float]:
        """A ``sum by (le)`` query as {upper bound: cumulative count}."""
        out: dict[float, float] = {}
        for sample in self._query(query, at):
            le = sample["metric"].get("le")
            if le is None:
                continue
            bound = float(le)
            out[bound * scale if not math.isinf(bound) else bound] = float(sample["value"][1])
        if not out:
            raise NoData("empty result")
        return out

    def range_sync(self, query: str, start: float, end: float, step: float) -> list[float]:
        """Values of a one-series range query (NaN steps dropped); empty is ``NoData``."""
        try:
            result = self._connect().custom_query_range(
                query, start_time=_dt(start), end_time=_dt(end), step=f"{step:g}s")
        except (PrometheusApiClientException, requests.RequestException, ValueError) as exc:
            raise Unreachable(f"prometheus {self.source.url}: {_short(exc)}") from None
        values = [float(v) for series in result for _, v in series.get("values", [])]
        values = [v for v in values if not math.isnan(v)]
        if not values:
            raise NoData("empty result")
        return values

    async def range(self, query: str, start: float, end: float, step: float) -> list[float]:
        return await asyncio.wait_for(_run(self.range_sync, query, start, end, step),
                                      timeout=self.timeout + 1)

    async def scalar(self, query: str, at: float | None = None) -> float:
        return await asyncio.wait_for(_run(self.scalar_sync, query, at), timeout=self.timeout + 1)

    async def buckets(self, query: str, scale: float = 1.0, at: float | None = None) -> dict[float, float]:
        return await asyncio.wait_for(_run(self.buckets_sync, query, scale, at),
                                      timeout=self.timeout + 1)

    async def healthy(self) -> str | None:
        """None when the server answers a trivial query, else the reason."""
        try:
            await self.scalar("vector(1)")
            return None
        except (TimeoutError, NoData) as exc:
            return str(exc) or "timeout"
