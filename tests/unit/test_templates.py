"""The exact PromQL of every built-in template, and escaping of values spliced into queries."""

from __future__ import annotations

import pytest

from federation.core.errors import PermanentError
from federation.metrics import templates as t

TARGET = t.Target("frontend", "shop", "v2", "eks")


def test_envoy_counts_use_response_code_on_upstream_rq():
    q = t.request_counts("envoy", TARGET, "1m")
    assert q.total == 'sum(increase(envoy_cluster_upstream_rq{envoy_cluster_name="frontend-v2"}[1m]))'
    assert q.good == ('sum(increase(envoy_cluster_upstream_rq{envoy_cluster_name="frontend-v2",'
                      'envoy_response_code!~"5.."}[1m]))')


def test_envoy_duration_buckets():
    q, scale = t.duration_buckets("envoy", TARGET, "30s")
    assert q == 'sum by (le) (increase(envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="frontend-v2"}[30s]))'
    assert scale == 1.0


@pytest.mark.parametrize(("mesh", "total", "good"), [
    ("linkerd", 'sum(increase(response_total{namespace="shop",deployment="frontend-v2",direction="inbound"}[1m]))',
     'sum(increase(response_total{namespace="shop",deployment="frontend-v2",direction="inbound",classification!="failure"}[1m]))'),
    ("istio", 'sum(increase(istio_requests_total{reporter="destination",destination_workload_namespace="shop",destination_workload="frontend-v2"}[1m]))',
     'sum(increase(istio_requests_total{reporter="destination",destination_workload_namespace="shop",destination_workload="frontend-v2",response_code!~"5.*"}[1m]))'),
    ("app", 'sum(increase(http_requests_total{service="frontend",version="v2"}[1m]))',
     'sum(increase(http_requests_total{service="frontend",version="v2",code!~"5.."}[1m]))'),
])
def test_counts_per_mesh(mesh, total, good):
    q = t.request_counts(mesh, TARGET, "1m")
    assert (q.total, q.good) == (total, good)


def test_app_histogram_is_in_seconds_and_scaled_to_ms():
    q, scale = t.duration_buckets("app", TARGET, "1m")
    assert q == 'sum by (le) (increase(http_request_duration_seconds_bucket{service="frontend",version="v2"}[1m]))'
    assert scale == 1000.0


def test_global_endpoint_adds_the_zone_matcher():
    g = t.Target("frontend", "shop", "v2", "eks", zone_label="cluster")
    assert t.request_counts("envoy", g, "1m").total == (
        'sum(increase(envoy_cluster_upstream_rq{envoy_cluster_name="frontend-v2",cluster="eks"}[1m]))')


def test_hostile_values_cannot_break_out_of_quotes():
    evil = t.Target('x"} or vector(1) or {a="', "shop", "v2", "eks")
    q = t.request_counts("app", evil, "1m").total
    assert q == 'sum(increase(http_requests_total{service="x\\"} or vector(1) or {a=\\"",version="v2"}[1m]))'
    assert t.label_value("a\\b\nc") == "a\\\\b\\nc"


FLAGGER_LINKERD = """histogram_quantile(0.99, sum(rate(response_latency_ms_bucket{
  namespace="{{ namespace }}", deployment=~"{{ target }}", direction="{{ variables.direction }}"
}[{{ interval }}])) by (le))"""


def builtins(**over: str) -> dict[str, str]:
    return {**t.builtin_variables(TARGET, "1m", "frontend-canary"), **over}


def test_flagger_template_variables_resolve_as_flagger_does():
    q = t.render_custom(FLAGGER_LINKERD, "latency", builtins(), {"direction": "inbound"})
    assert q == """histogram_quantile(0.99, sum(rate(response_latency_ms_bucket{
  namespace="shop", deployment=~"frontend-v2", direction="inbound"
}[1m])) by (le))"""
    # Every Flagger built-in, Go's spacing variants, trim markers and comments.
    q = t.render_custom('{{name}}|{{ namespace }}|{{  target}}|{{service }}|{{ ingress }}|{{ interval }}|'
                        '{{ version }}|{{ zone }}|{{/* a comment */}}|a   {{- zone -}}   b', "m", builtins(), None)
    assert q == "frontend-canary|shop|frontend-v2|frontend|frontend|1m|v2|eks||aeksb"


def test_template_values_are_escaped_for_promql():
    q = t.render_custom('x{app="{{ target }}",d="{{ variables.d }}"}', "m",
                        builtins(target='web"}'), {"d": 'a\\b"c'})
    assert q == 'x{app="web\\"}",d="a\\\\b\\"c"}'


@pytest.mark.parametrize("query, message", [
    ("{{ variables.direction }}", "metric 'latency': the query uses {{ variables.direction }} but templateVariables "
                                  "has no 'direction' (has: app)"),
    ("{{ nope }}", "metric 'latency': {{ nope }} is not a template variable"),
    ("{{ .Target }}", "metric 'latency': {{ .Target }} is not a template variable"),
    ('{{ printf "%s" target }}', "is not a template variable"),
])
def test_unknown_variables_are_errors_naming_the_metric(query: str, message: str):
    with pytest.raises(PermanentError) as err:
        t.render_custom(query, "latency", builtins(), {"app": "x"})
    assert message in str(err.value)


def test_a_query_without_variables_is_unchanged():
    q = 'sum(rate(x{a="b"}[5m])) / sum(rate(x{}[5m]))'
    assert t.render_custom(q, "m", builtins(), None) == q


def test_unknown_mesh_is_a_clear_error():
    with pytest.raises(PermanentError, match="no built-in"):
        t.request_counts("consul", TARGET, "1m")


def test_durations_as_flagger_writes_them_including_graphite_min():
    from federation.core import durations

    assert [durations.parse(x) for x in ("30s", "1m", "1h30m", "500ms", "1min", "2min30s")] == [
        30.0, 60.0, 5400.0, 0.5, 60.0, 150.0]
    with pytest.raises(ValueError, match="invalid duration"):
        durations.parse("1 minute")
