"""PromQL templates: built-in metrics per mesh, and custom templates with escaped variables.

Only strings are made here (tests assert them exactly); ``metrics.prometheus`` runs them. Every
value spliced into a query goes through ``label_value`` so a name can never break out of its
quotes. Each built-in returns the raw parts the aggregator needs (counts and buckets), never a
ratio or a quantile, so zones can be combined correctly.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from federation.core import querytemplate
from federation.core.errors import PermanentError


def label_value(value: str) -> str:
    """A PromQL double-quoted string literal body: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def regex_literal(value: str) -> str:
    """A value matched literally inside ``=~``: regex metacharacters escaped, then quoted safely."""
    return label_value(re.escape(value))


@dataclass(frozen=True)
class Target:
    """What one zone's queries select: the canary (or primary) of one service.

    ``zone_label`` is set when one global endpoint (Thanos, Mimir) answers for every zone: each
    query then also selects ``<zone_label>="<zone>"``.
    """

    service: str
    namespace: str
    version: str
    zone: str
    zone_label: str | None = None

    def zone_matcher(self) -> str:
        return f',{self.zone_label}="{label_value(self.zone)}"' if self.zone_label else ""


@dataclass(frozen=True)
class CountQueries:
    total: str
    good: str


def selector(mesh: str, t: Target) -> str:
    """The label matchers that pick one version of one service in one zone, per mesh's metrics."""
    workload = label_value(f"{t.service}-{t.version}")
    if mesh in ("envoy", "kuma"):
        # The zone ingress names one cluster per local version: <service>-<version>.
        sel = f'envoy_cluster_name="{workload}"'
    elif mesh in ("linkerd", "smi", "gatewayapi"):
        sel = f'namespace="{label_value(t.namespace)}",deployment="{workload}",direction="inbound"'
    elif mesh == "istio":
        sel = (f'reporter="destination",destination_workload_namespace="{label_value(t.namespace)}",'
               f'destination_workload="{workload}"')
    elif mesh == "app":
        sel = f'service="{label_value(t.service)}",version="{label_value(t.version)}"'
    else:
        raise PermanentError(f"no built-in metrics for mesh {mesh!r}")
    return sel + t.zone_matcher()


# metric name, the "good" matcher, for request counts; histogram name and le unit (to ms) for duration.
_COUNTS = {
    "envoy": ("envoy_cluster_upstream_rq", 'envoy_response_code!~"5.."'),
    "kuma": ("envoy_cluster_upstream_rq", 'envoy_response_code!~"5.."'),
    "linkerd": ("response_total", 'classification!="failure"'),
    "smi": ("response_total", 'classification!="failure"'),
    "gatewayapi": ("response_total", 'classification!="failure"'),
    "istio": ("istio_requests_total", 'response_code!~"5.*"'),
    "app": ("http_requests_total", 'code!~"5.."'),
}
_BUCKETS = {
    "envoy": ("envoy_cluster_upstream_rq_time_bucket", 1.0),
    "kuma": ("envoy_cluster_upstream_rq_time_bucket", 1.0),
    "linkerd": ("response_latency_ms_bucket", 1.0),
    "smi": ("response_latency_ms_bucket", 1.0),
    "gatewayapi": ("response_latency_ms_bucket", 1.0),
    "istio": ("istio_request_duration_milliseconds_bucket", 1.0),
    "app": ("http_request_duration_seconds_bucket", 1000.0),
}


def request_counts(mesh: str, t: Target, window: str) -> CountQueries:
    """Requests and non-5xx requests in the window, for request-success-rate.

    On Envoy, ``envoy_response_code`` lives on ``envoy_cluster_upstream_rq``; the ``_xx`` series
    carries only the class.
    """
    if mesh not in _COUNTS:
        raise PermanentError(f"no built-in request counts for mesh {mesh!r}")
    metric, good = _COUNTS[mesh]
    sel = selector(mesh, t)
    return CountQueries(total=f"sum(increase({metric}{{{sel}}}[{window}]))",
                        good=f"sum(increase({metric}{{{sel},{good}}}[{window}]))")


def duration_buckets(mesh: str, t: Target, window: str) -> tuple[str, float]:
    """Histogram buckets by ``le`` in the window, and the factor that turns ``le`` into milliseconds."""
    if mesh not in _BUCKETS:
        raise PermanentError(f"no built-in request duration for mesh {mesh!r}")
    metric, scale = _BUCKETS[mesh]
    return f"sum by (le) (increase({metric}{{{selector(mesh, t)}}}[{window}]))", scale


def step_series(mesh: str, t: Target, metric_name: str, step: str) -> str:
    """A per-step figure for canary-vs-primary comparison (range query samples)."""
    sel = selector(mesh, t)
    if metric_name == "request-success-rate":
        metric, good = _COUNTS[mesh]
        return (f"100 * sum(rate({metric}{{{sel},{good}}}[{step}])) / sum(rate({metric}{{{sel}}}[{step}]))")
    metric, scale = _BUCKETS[mesh]
    return f"{scale:g} * histogram_quantile(0.99, sum by (le) (rate({metric}{{{sel}}}[{step}])))"


def render_custom(query: str, metric: str, builtins: dict[str, str], variables: dict[str, str] | None,
                  escape: Callable[[str], str] = label_value) -> str:
    """A custom query with Flagger's ``{{ name }}`` and ``{{ variables.NAME }}``, values escaped for
    the backend (PromQL's label-value escaping by default). An unknown variable is a
    ``PermanentError`` naming the metric, never left in the query."""
    try:
        return querytemplate.render(query, metric, builtins, variables, escape)
    except querytemplate.TemplateError as exc:
        raise PermanentError(str(exc)) from None
    except ValueError as exc:  # the backend's escaping refused a value
        raise PermanentError(f"metric {metric!r}: {exc}") from None


def builtin_variables(t: Target, interval: str, name: str | None = None) -> dict[str, str]:
    """Flagger's built-in template variables for one zone's query.

    ``target`` is the workload under test, as Flagger's (its canary Deployment): here the canary
    version's workload ``<service>-<version>``; ``name`` is the FederatedCanary's name; ``ingress``
    is the service's route (named after the service); ``interval`` is the metric's, as written.
    """
    return {"name": name or t.service, "namespace": t.namespace, "target": f"{t.service}-{t.version}",
            "service": t.service, "ingress": t.service, "interval": interval, "version": t.version,
            "zone": t.zone}
