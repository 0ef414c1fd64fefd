"""Metric backends a MetricTemplate's ``provider`` names, one module per vendor, and the factory.

A backend runs one rendered query for one zone at one instant and returns one float; any error,
empty answer or NaN is ``NoData`` with a one-line reason (never a pass, never the credentials or
the encoded query). Each declares how a template value is escaped for its query language.
Prometheus without an ``address`` is the zone's own Prometheus (``metrics.prometheus``).
Callers: ``metrics.analysis``.
"""

from __future__ import annotations

from typing import Protocol

from federation import resolve
from federation.core import durations, outbound
from federation.core.spec import (
    Fleet,
    MetricProvider,
    MetricProviderType,
    PrometheusAuth,
    PrometheusSource,
    Zone,
)
from federation.metrics import templates
from federation.metrics.backends import (
    cloudwatch,
    datadog,
    dynatrace,
    graphite,
    http,
    influxdb,
    keptn,
    newrelic,
    secrets,
    splunk,
    stackdriver,
)
from federation.metrics.prometheus import Client, NoData, Unreachable

SUPPORTED = (MetricProviderType.PROMETHEUS, MetricProviderType.DATADOG, MetricProviderType.GRAPHITE,
             MetricProviderType.INFLUXDB, MetricProviderType.NEWRELIC, MetricProviderType.DYNATRACE,
             MetricProviderType.CLOUDWATCH, MetricProviderType.STACKDRIVER, MetricProviderType.SPLUNK,
             MetricProviderType.KEPTN)


class Backend(Protocol):
    def escape(self, value: str) -> str:
        """A template value for this backend's query language (ValueError when it cannot be safe)."""
        ...

    async def scalar(self, query: str, at: float) -> float: ...


class _Prometheus:
    """A template's own Prometheus address (``secretRef`` keys: token, or username and password)."""

    escape = staticmethod(templates.label_value)

    def __init__(self, provider: MetricProvider, store: secrets.Store, timeout: str,
                 policy: outbound.Policy | None = None) -> None:
        ref = provider.secret_ref.name if provider.secret_ref else None
        auth = PrometheusAuth(insecure_skip_verify=provider.insecure_skip_verify)
        if ref is not None:
            token = store.where(ref, "token")
            user = store.value(ref, "username")
            password = store.where(ref, "password")
            auth = PrometheusAuth(
                bearer_token_env=token[1] if token and token[0] == "env" else None,
                bearer_token_file=token[1] if token and token[0] == "file" else None,
                username=user, password_env=password[1] if password and password[0] == "env" else None,
                password_file=password[1] if password and password[0] == "file" else None,
                insecure_skip_verify=provider.insecure_skip_verify)
        assert provider.address is not None
        self.base = provider.address
        # The provider's headers (Flagger's ``headers``: a tenant id, say) on every query; the policy
        # checked where each connection is made, as for the zones' own Prometheus.
        self.client = Client(PrometheusSource(url=provider.address, auth=auth, timeout=timeout), policy,
                             headers=http.extra_headers(provider))

    async def scalar(self, query: str, at: float) -> float:
        return await self.client.scalar(query, at)


def effective(provider: MetricProvider, zone: Zone) -> MetricProvider:
    """The template's provider with the zone's override of the same type laid over it."""
    for o in zone.metric_providers:
        if o.type is provider.type:
            given = o.model_dump(exclude_unset=True, exclude={"type"})
            return provider.model_copy(update={k: getattr(o, k) for k in given})
    return provider


class _Policed:
    """A backend whose every query first passes the Fleet's outbound policy (``spec.outbound``):
    its address is resolved and refused, as a broken backend (no data), when the policy says no."""

    def __init__(self, inner: Backend, policy: outbound.Policy | None, kind: str) -> None:
        self.inner = inner
        self.policy = policy
        self.kind = kind

    def escape(self, value: str) -> str:
        return self.inner.escape(value)

    async def scalar(self, query: str, at: float) -> float:
        base = str(getattr(self.inner, "base", None) or getattr(self.inner, "address", None) or "")
        why = await resolve.refused_async(self.policy, base) if base else None
        if why is not None:
            raise Unreachable(f"{self.kind} {outbound.redact(base)}: refused by the outbound policy: {why}")
        token = resolve.POLICY.set(self.policy)  # its HTTP client connects only where the policy allows
        try:
            return await self.inner.scalar(query, at)
        finally:
            resolve.POLICY.reset(token)


def build(provider: MetricProvider, zone: Zone, fleet: Fleet, interval: str,
          kube: keptn.KubeObjects | None = None) -> Backend | None:
    """The backend for ``provider`` in ``zone`` (None: the zone's own Prometheus), behind the
    fleet's outbound policy; ``kube`` reads the zone's Kubernetes objects (Keptn)."""
    inner = _build(provider, zone, fleet, interval, kube)
    return None if inner is None else _Policed(inner, fleet.outbound_policy(), provider.type.value)


def _build(provider: MetricProvider, zone: Zone, fleet: Fleet, interval: str,
           kube: keptn.KubeObjects | None = None) -> Backend | None:
    p = effective(provider, zone)
    cfg = fleet.spec.metrics
    store = secrets.Store(cfg.secrets_dir if cfg else None)
    timeout = zone.prometheus.timeout
    window = durations.parse(interval)
    if p.type is MetricProviderType.PROMETHEUS:
        return None if p.address is None else _Prometheus(p, store, timeout, fleet.outbound_policy())
    if p.type is MetricProviderType.DATADOG:
        return datadog.Datadog(p, store, durations.parse(timeout), window)
    if p.type is MetricProviderType.GRAPHITE:
        return graphite.Graphite(p, store, durations.parse(timeout))
    if p.type is MetricProviderType.INFLUXDB:
        return influxdb.InfluxDB(p, store, durations.parse(timeout))
    if p.type is MetricProviderType.NEWRELIC:
        return newrelic.NewRelic(p, store, durations.parse(timeout), window)
    if p.type is MetricProviderType.STACKDRIVER:
        return stackdriver.Stackdriver(p, store, durations.parse(timeout))
    if p.type is MetricProviderType.CLOUDWATCH:
        return cloudwatch.CloudWatch(p, store, durations.parse(timeout), window)
    if p.type is MetricProviderType.DYNATRACE:
        return dynatrace.Dynatrace(p, store, durations.parse(timeout), window)
    if p.type is MetricProviderType.KEPTN:
        return keptn.Keptn(zone, kube)
    if p.type is MetricProviderType.SPLUNK:
        return splunk.Splunk(p, store, durations.parse(timeout), window)
    raise NoData(f"provider type {p.type.value} is not supported here "
                 f"(supported: {', '.join(t.value for t in SUPPORTED)})")
