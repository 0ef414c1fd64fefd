"""PromQL templates: built-in metrics per mesh, and custom templates with escaped variables.

Only strings are made here (tests assert them exactly); ``metrics.prometheus`` runs them. Every
value spliced into a query goes through ``label_value`` so a name can never break out of its
quotes. Each built-in returns the raw parts the aggregator needs (counts and buckets), never a
ratio or a quantile, so zones can be combined correctly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from federation.core.errors import PermanentError


def label_value(value: str) -> str:
    """A PromQL double-quoted string literal body: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def regex_literal(value: str) -> str:
    """A value matched literally inside ``=~``: regex metacharacters escaped, then quoted safely."""
    return label_value(re.escape(value))


@dataclass(frozen=True)
class Target:
    """What one zone's queries select: the canary (or primary) of one service."""

    service: str
    namespace: str
    version: str
    zone: str


@dataclass(frozen=True)
class CountQueries:
    total: str
    good: str


def envoy_cluster(t: Target) -> str:
    # The zone ingress names one cluster per local version: <service>-<version>.
    return f'envoy_cluster_name="{label_value(f"{t.service}-{t.version}")}"'


def request_counts(mesh: str, t: Target, window: str) -> CountQueries:
    """Requests and non-5xx requests in the window, for request-success-rate."""
    if mesh in ("envoy", "kuma"):
        sel = envoy_cluster(t)
        # envoy_response_code lives on envoy_cluster_upstream_rq (the _xx series carries the class).
        return CountQueries(
            total=f"sum(increase(envoy_cluster_upstream_rq{{{sel}}}[{window}]))",
            good=f'sum(increase(envoy_cluster_upstream_rq{{{sel},envoy_response_code!~"5.."}}[{window}]))',
        )
    if mesh in ("linkerd", "smi", "gatewayapi"):
        sel = (f'namespace="{label_value(t.namespace)}",deployment="{label_value(f"{t.service}-{t.version}")}",'
               f'direction="inbound"')
        return CountQueries(
            total=f"sum(increase(response_total{{{sel}}}[{window}]))",
            good=f'sum(increase(response_total{{{sel},classification!="failure"}}[{window}]))',
        )
    if mesh == "istio":
        sel = (f'reporter="destination",destination_workload_namespace="{label_value(t.namespace)}",'
               f'destination_workload="{label_value(f"{t.service}-{t.version}")}"')
        return CountQueries(
            total=f"sum(increase(istio_requests_total{{{sel}}}[{window}]))",
            good=f'sum(increase(istio_requests_total{{{sel},response_code!~"5.*"}}[{window}]))',
        )
    if mesh == "app":
        sel = f'service="{label_value(t.service)}",version="{label_value(t.version)}"'
        return CountQueries(
            total=f"sum(increase(http_requests_total{{{sel}}}[{window}]))",
            good=f'sum(increase(http_requests_total{{{sel},code!~"5.."}}[{window}]))',
        )
    raise PermanentError(f"no built-in request counts for mesh {mesh!r}")


def duration_buckets(mesh: str, t: Target, window: str) -> tuple[str, float]:
    """Histogram buckets by ``le`` in the window, and the factor that turns ``le`` into milliseconds."""
    if mesh in ("envoy", "kuma"):
        return (f"sum by (le) (increase(envoy_cluster_upstream_rq_time_bucket{{{envoy_cluster(t)}}}[{window}]))", 1.0)
    if mesh in ("linkerd", "smi", "gatewayapi"):
        sel = (f'namespace="{label_value(t.namespace)}",deployment="{label_value(f"{t.service}-{t.version}")}",'
               f'direction="inbound"')
        return (f"sum by (le) (increase(response_latency_ms_bucket{{{sel}}}[{window}]))", 1.0)
    if mesh == "istio":
        sel = (f'reporter="destination",destination_workload_namespace="{label_value(t.namespace)}",'
               f'destination_workload="{label_value(f"{t.service}-{t.version}")}"')
        return (f"sum by (le) (increase(istio_request_duration_milliseconds_bucket{{{sel}}}[{window}]))", 1.0)
    if mesh == "app":
        sel = f'service="{label_value(t.service)}",version="{label_value(t.version)}"'
        return (f"sum by (le) (increase(http_request_duration_seconds_bucket{{{sel}}}[{window}]))", 1000.0)
    raise PermanentError(f"no built-in request duration for mesh {mesh!r}")


_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def render_custom(query: str, variables: dict[str, str]) -> str:
    """A custom query with ``{{ name }}`` variables (Flagger's template names), values escaped.

    Values land inside label-value quotes in well-formed templates; escaping keeps a hostile value
    from closing the quote. An unknown variable is an error, never silently left in place.
    """
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in variables:
            raise PermanentError(f"metric template uses {{{{ {name} }}}} but no such variable is set "
                                 f"(known: {', '.join(sorted(variables))})")
        return label_value(variables[name])

    return _VAR.sub(sub, query)


def builtin_variables(t: Target, interval: str) -> dict[str, str]:
    """Flagger's template variables, for custom queries."""
    return {"namespace": t.namespace, "name": t.service, "target": t.service, "service": t.service,
            "version": t.version, "zone": t.zone, "interval": interval, "variables": ""}
