"""One analysis: every canary zone's Prometheus queried concurrently, figures per zone and global.

Built-ins return counts and buckets per zone; the global figure combines them (summed counts,
merged buckets). A zone that cannot answer yields a no-data sample with the reason, and makes the
global figure no-data too: a healthy average must not hide a zone we could not see.
Callers: the hub's rollout worker, ``fedctl metrics``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from federation.core import durations
from federation.core.errors import PermanentError
from federation.core.spec import Aggregate, CanarySpec, Fleet, MetricCheck, MetricTemplate
from federation.core.state import MetricSample
from federation.metrics import aggregate, backends, templates
from federation.metrics import compare as compare_mod
from federation.metrics.prometheus import Client, NoData, Unreachable


@dataclass(frozen=True)
class _ZoneFigures:
    zone: str
    value: float | None
    requests: float | None
    reason: str
    good: float = 0.0
    total: float = 0.0
    buckets: dict[float, float] | None = None
    broken: bool = False  # the server failed (Unreachable, a timeout), not merely no data


async def _together(*queries: Awaitable[Any]) -> list[Any]:
    """The queries of one zone at once (an analysis then costs about its slowest query, not their
    sum); an error is raised as awaiting them in turn would: the first one's, in argument order."""
    results = await asyncio.gather(*queries, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


async def _good_and_total(client: Client, q: templates.CountQueries, at: float) -> tuple[float, float]:
    """(good, total) requests; both asked at once, good counted only when there were requests (its
    error then is no error: as when it was asked only after a total above 0)."""
    total, good = await asyncio.gather(client.scalar(q.total, at), client.scalar(q.good, at), return_exceptions=True)
    if isinstance(total, BaseException):
        raise total
    if total <= 0:
        return 0.0, total
    if isinstance(good, BaseException):
        raise good
    return good, total


class Analyzer:
    """Owns one Prometheus client per zone (kept across ticks)."""

    def __init__(self, fleet: Fleet, mesh: str | None = None,
                 metric_templates: dict[str, MetricTemplate | str] | None = None,
                 kube: backends.keptn.KubeObjects | None = None) -> None:
        self.fleet = fleet
        self.kube = kube  # a zone's Kubernetes objects, for the Keptn provider
        cfg = fleet.spec.metrics
        self.mesh = mesh or (cfg.mesh if cfg and cfg.mesh else fleet.spec.mesh.provider.value)
        self.zone_label: str | None = None
        if cfg is not None and cfg.global_ is not None:
            # One endpoint (Thanos, Mimir) for every zone; queries select the zone by label.
            shared = Client(cfg.global_.prometheus, fleet.outbound_policy())
            self.clients = {z.name: shared for z in fleet.spec.zones}
            self.zone_label = cfg.global_.zone_label
        else:
            self.clients = {z.name: Client(z.prometheus, fleet.outbound_policy()) for z in fleet.spec.zones}
        # MetricTemplate queries by name, read by the hub from the mesh repo's templates/ folder.
        self.templates: dict[str, MetricTemplate | str] = dict(metric_templates or {})
        self._backends: dict[tuple[str, str, str, str], backends.Backend | None] = {}

    async def collect(self, spec: CanarySpec, namespace: str, version: str | None = None,
                      at: float | None = None, name: str | None = None) -> tuple[MetricSample, ...]:
        """Every metric of the spec, all queries evaluated at the same instant ``at`` (default: now).
        ``name`` is the FederatedCanary's (``{{ name }}`` in templates; default: the service's)."""
        version = version or spec.canary.version
        at = time.time() if at is None else at
        results = await asyncio.gather(*[self.metric(spec, m, namespace, version, at, name)
                                         for m in spec.analysis.metrics])
        return tuple(s for r in results for s in r)

    async def metric(self, spec: CanarySpec, m: MetricCheck, namespace: str, version: str,
                     at: float, name: str | None = None) -> list[MetricSample]:
        window = durations.prometheus_range(durations.parse(m.interval))
        zones = spec.canary.zones
        if m.compare == "primary":
            return await self.compare(spec, m, namespace, version, at)
        if m.slo is not None:
            return await self.slo(spec, m, namespace, version, at)
        figures = await asyncio.gather(*[self._zone(m, spec.service.name, namespace, version, z, window, at, name)
                                         for z in zones])
        samples = [MetricSample(m.name, f.zone, f.value, f.reason, f.requests, broken=f.broken) for f in figures]
        missing = [f for f in figures if f.value is None and f.reason]
        if missing:
            reason = "; ".join(f"{f.zone}: {f.reason}" for f in missing)
            samples.insert(0, MetricSample(m.name, None, None, reason))
            return samples
        if m.is_ratio:  # counts summed over the zones, then divided
            good, total = sum(f.good for f in figures), sum(f.total for f in figures)
            value = good / total if total > 0 else None
            if value is None:
                samples.insert(0, MetricSample(m.name, None, None, "denominator summed over the zones is 0"))
                return samples
        elif m.name == "request-success-rate" and m.query is None and m.template_ref is None:
            value = aggregate.ratio_percent([f.good for f in figures], [f.total for f in figures])
        elif m.name == "request-duration" and m.query is None and m.template_ref is None:
            value = aggregate.quantile(0.99, aggregate.merge([f.buckets or {} for f in figures]))
        else:
            # A custom query has no parts to combine: its zones' values combine as the metric says
            # (default: the worst zone's).
            known = [f for f in figures if f.value is not None]
            weights = [f.requests or 0.0 for f in known] if m.aggregate is Aggregate.WEIGHTED_MEAN else None
            value = aggregate.combine(m.aggregate.value, [f.value for f in known if f.value is not None],
                                      m.bounds, weights)
        total = sum(f.requests or 0.0 for f in figures)
        samples.insert(0, MetricSample(m.name, None, value, "" if value is not None else "no requests", total))
        return samples

    async def _zone(self, m: MetricCheck, service: str, namespace: str, version: str, zone: str,
                    window: str, at: float, name: str | None = None) -> _ZoneFigures:
        client = self.clients[zone]
        t = templates.Target(service, namespace, version, zone, self.zone_label)
        backend: backends.Backend | None = None
        try:
            if m.numerator is not None and m.denominator is not None:
                variables = templates.builtin_variables(t, m.interval, name)
                num, den = await asyncio.gather(*[
                    client.scalar(templates.render_custom(q, m.name, variables, m.template_variables,
                                                          templates.label_value), at)
                    for q in (m.numerator, m.denominator)])
                if den <= 0:
                    return _ZoneFigures(zone, None, None, "denominator is 0", num, den)
                return _ZoneFigures(zone, num / den, den, "", num, den)
            query_text = m.query
            if m.template_ref is not None:
                template = self.templates.get(m.template_ref.name)
                if template is None:
                    raise NoData(f"MetricTemplate {m.template_ref.name!r} not found in the mesh repo's templates/")
                if isinstance(template, str):
                    raise NoData(f"MetricTemplate {m.template_ref.name!r} is invalid: {template}")
                backend = self._backend(m.template_ref.name, template, zone, m.interval)
                query_text = template.spec.query
            if query_text is not None:
                q = templates.render_custom(query_text, m.name, templates.builtin_variables(t, m.interval, name),
                                            m.template_variables, backend.escape if backend else templates.label_value)
                if m.aggregate is Aggregate.WEIGHTED_MEAN:  # weighed by the zone's requests in the window
                    v, requests = await _together((backend or client).scalar(q, at), client.scalar(
                        templates.request_counts(self.mesh, t, window).total, at))
                    return _ZoneFigures(zone, v, requests, "")
                return _ZoneFigures(zone, await (backend or client).scalar(q, at), None, "")
            counts = templates.request_counts(self.mesh, t, window)
            if m.name == "request-success-rate":
                good, total = await _good_and_total(client, counts, at)
                value = aggregate.ratio_percent([good], [total])
                return _ZoneFigures(zone, value, total, "" if value is not None else "no requests", good, total)
            query, scale = templates.duration_buckets(self.mesh, t, window)
            total, buckets = await _together(client.scalar(counts.total, at), client.buckets(query, scale, at))
            value = aggregate.quantile(0.99, buckets)
            return _ZoneFigures(zone, value, total, "" if value is not None else "no requests", buckets=buckets)
        except Unreachable as exc:
            return _ZoneFigures(zone, None, None, str(exc), broken=True)
        except (NoData, PermanentError) as exc:
            return _ZoneFigures(zone, None, None, str(exc))
        except TimeoutError:
            where = "backend" if backend is not None else f"prometheus {client.source.url}"
            return _ZoneFigures(zone, None, None, f"{where}: timed out", broken=True)

    def _backend(self, name: str, template: MetricTemplate, zone: str, interval: str) -> backends.Backend | None:
        """The template's provider in ``zone`` (kept across ticks; None: the zone's Prometheus)."""
        key = (name, zone, interval, template.spec.provider.model_dump_json())
        if key not in self._backends:
            self._backends[key] = backends.build(template.spec.provider, self.fleet.zone(zone), self.fleet, interval,
                                                  self.kube)
        return self._backends[key]

    async def _counts(self, service: str, namespace: str, version: str, zone: str, window: str,
                      at: float) -> tuple[float, float] | str:
        """(good, total) requests of one zone in one window, or why not."""
        client = self.clients[zone]
        q = templates.request_counts(self.mesh, templates.Target(service, namespace, version, zone, self.zone_label),
                                     window)
        try:
            return await _good_and_total(client, q, at)
        except NoData as exc:
            return str(exc)
        except TimeoutError:
            return f"prometheus {client.source.url}: timed out"

    async def slo(self, spec: CanarySpec, m: MetricCheck, namespace: str, version: str,
                  at: float) -> list[MetricSample]:
        """Burn rates of the error budget over each window, per zone and from summed counts; the
        figure is the slowest window's (every window must burn faster than burnRate to fail)."""
        assert m.slo is not None
        budget = 1.0 - m.slo.objective / 100.0
        windows = [durations.prometheus_range(durations.parse(w)) for w in m.slo.windows]
        zones = spec.canary.zones
        got = await asyncio.gather(*[self._counts(spec.service.name, namespace, version, z, w, at)
                                     for z in zones for w in windows])
        by = {(z, w): got[i * len(windows) + j] for i, z in enumerate(zones) for j, w in enumerate(windows)}

        def figure(counts: list[tuple[float, float] | str]) -> tuple[float | None, str, float | None]:
            burns: list[float] = []
            for w, c in zip(windows, counts, strict=True):
                if isinstance(c, str):
                    return None, c, None
                good, total = c
                if total <= 0:
                    return None, f"no requests in {w}", 0.0
                burns.append((1.0 - good / total) / budget)
            first = counts[0]
            return min(burns), "", first[1] if not isinstance(first, str) else None

        samples = []
        for z in zones:
            value, reason, n = figure([by[(z, w)] for w in windows])
            samples.append(MetricSample(m.name, z, value, reason, n))
        missing = [s for s in samples if s.value is None]
        if missing:
            samples.insert(0, MetricSample(m.name, None, None, "; ".join(f"{s.zone}: {s.reason}" for s in missing)))
            return samples
        summed: list[tuple[float, float] | str] = []
        for w in windows:
            parts = [by[(z, w)] for z in zones]
            summed.append((sum(p[0] for p in parts if not isinstance(p, str)),
                           sum(p[1] for p in parts if not isinstance(p, str))))
        value, reason, n = figure(summed)
        samples.insert(0, MetricSample(m.name, None, value, reason, n))
        return samples

    async def _series(self, metric: str, service: str, namespace: str, version: str, zone: str,
                      start: float, end: float, step: float) -> list[float] | str:
        t = templates.Target(service, namespace, version, zone, self.zone_label)
        q = templates.step_series(self.mesh, t, metric, durations.prometheus_range(max(step * 2, 2.0)))
        try:
            return await self.clients[zone].range(q, start, end, step)
        except NoData as exc:
            return f"{zone}: {exc}"
        except TimeoutError:
            return f"{zone}: timeout"

    async def compare(self, spec: CanarySpec, m: MetricCheck, namespace: str, version: str,
                      at: float) -> list[MetricSample]:
        """Canary against primary over the metric's window: per canary zone, and pooled (global)."""
        if m.name not in ("request-success-rate", "request-duration"):
            reason = "compare: primary works on request-success-rate and request-duration"
            return [MetricSample(m.name, None, None, reason)] + [MetricSample(m.name, z, None, reason)
                                                                  for z in spec.canary.zones]
        window = durations.parse(m.interval)
        step = max(window / 30.0, 1.0)
        start = at - window
        svc = spec.service.name
        canary = await asyncio.gather(*[self._series(m.name, svc, namespace, version, z, start, at, step)
                                        for z in spec.canary.zones])
        primary = await asyncio.gather(*[self._series(m.name, svc, namespace, spec.primary.version, z, start, at, step)
                                         for z in spec.primary.zones])
        higher_is_worse = m.name == "request-duration"
        pooled_primary = [v for s in primary if isinstance(s, list) for v in s]
        primary_missing = [s for s in primary if isinstance(s, str)]
        out: list[MetricSample] = []
        pooled_canary: list[float] = []
        for zone, series in zip(spec.canary.zones, canary, strict=True):
            if isinstance(series, str):
                out.append(MetricSample(m.name, zone, None, series))
                continue
            pooled_canary.extend(series)
            r = compare_mod.compare(series, pooled_primary, higher_is_worse)
            out.append(MetricSample(m.name, zone, r.canary_median, r.reason, float(len(series)),
                                    None if r.verdict == "nodata" else r.verdict))
        if primary_missing or any(isinstance(s, str) for s in canary):
            reason = "; ".join([*primary_missing, *(s for s in canary if isinstance(s, str))])
            out.insert(0, MetricSample(m.name, None, None, f"comparison incomplete: {reason}"))
            return out
        r = compare_mod.compare(pooled_canary, pooled_primary, higher_is_worse)
        out.insert(0, MetricSample(m.name, None, r.canary_median, r.reason, float(len(pooled_canary)),
                                   None if r.verdict == "nodata" else r.verdict))
        return out
