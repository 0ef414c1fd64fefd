"""Metric backends against loopback servers speaking each vendor's documented HTTP API: the request
(path, parameters, auth headers), the answer's shape, errors and rate limits. An error, no series,
nulls or NaN is no data, never a pass; credentials come from a secret file or the environment and
never appear in a reason or a log."""

from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path

import pytest

from federation.core import spec as specs
from federation.metrics import backends
from federation.metrics.backends import datadog, graphite, influxdb, secrets, splunk
from federation.metrics.prometheus import NoData, Unreachable
from tests import fleets, provider_stubs

AT = 1_700_000_000.0


def provider(**fields: object) -> specs.MetricProvider:
    return specs.MetricProvider.model_validate(fields)


def backend(p: specs.MetricProvider, tmp_path: Path, interval: str = "1m", zone: dict | None = None):
    fleet = fleets.fleet([zone or fleets.vm_zone("eks")])
    fleet = fleet.model_copy(update={"spec": fleet.spec.model_copy(update={
        "metrics": specs.MetricsConfig(secrets_dir=str(tmp_path / "secrets"))})})
    return backends.build(p, fleet.spec.zones[0], fleet, interval)


def secret(tmp_path: Path, name: str, **keys: str) -> None:
    d = tmp_path / "secrets" / name
    d.mkdir(parents=True, exist_ok=True)
    for k, v in keys.items():
        (d / k).write_text(v + "\n")


def scalar(b, query: str) -> float:
    return asyncio.run(b.scalar(query, AT))


# ----------------------------------------------------------------------------- Datadog


def test_datadog_request_shape_and_first_non_null_point(tmp_path: Path, caplog):
    dd = provider_stubs.datadog([[1.0, None], [2.0, 0.42], [3.0, 0.9]], api_key="k-api", app_key="k-app")
    try:
        secret(tmp_path, "dd", datadog_api_key="k-api", datadog_application_key="k-app")
        b = backend(provider(type="datadog", address=dd.url, secretRef={"name": "dd"}), tmp_path, interval="2m")
        with caplog.at_level(logging.DEBUG):
            assert scalar(b, "sum:istio.mesh.request.count{app:web}.as_count()") == 0.42
        method, path, params, headers, _ = dd.asked[0]
        assert (method, path) == ("GET", "/api/v1/query")
        assert params == {"query": ["sum:istio.mesh.request.count{app:web}.as_count()"],
                          "from": [str(int(AT - 10 * 120))], "to": [str(int(AT))]}  # ten intervals, as Flagger
        assert headers["dd-api-key"] == "k-api" and headers["dd-application-key"] == "k-app"
        assert "k-api" not in caplog.text and "k-app" not in caplog.text
    finally:
        dd.close()


def test_datadog_keys_from_the_environment_win(tmp_path: Path, monkeypatch):
    dd = provider_stubs.datadog([[1.0, 7.0]], api_key="env-api", app_key="env-app")
    try:
        secret(tmp_path, "dd", datadog_api_key="file-api", datadog_application_key="file-app")
        monkeypatch.setenv("FEDERATION_SECRET_DD_DATADOG_API_KEY", "env-api")
        monkeypatch.setenv("FEDERATION_SECRET_DD_DATADOG_APPLICATION_KEY", "env-app")
        assert scalar(backend(provider(type="datadog", address=dd.url, secretRef={"name": "dd"}), tmp_path), "q") == 7.0
    finally:
        dd.close()


@pytest.mark.parametrize("pointlist, status, keys, error, reason", [
    (None, 200, ("a", "b"), NoData, "empty result"),
    ([], 200, ("a", "b"), NoData, "empty result"),
    ([[1.0, None], [2.0, None]], 200, ("a", "b"), NoData, "empty result"),
    ([[1.0, 1.0]], 429, ("a", "b"), Unreachable, "rate limited (HTTP 429, retry in 17s)"),
    ([[1.0, 1.0]], 500, ("a", "b"), Unreachable, "HTTP 500: Internal error"),
    ([[1.0, 1.0]], 200, ("a", "wrong"), Unreachable, "credentials refused (HTTP 403): Forbidden"),
])
def test_datadog_no_answer_is_no_data(tmp_path: Path, pointlist, status, keys, error, reason):
    dd = provider_stubs.datadog(pointlist, api_key="a", app_key="b", status=status)
    try:
        secret(tmp_path, "dd", datadog_api_key=keys[0], datadog_application_key=keys[1])
        with pytest.raises(error) as exc:
            scalar(backend(provider(type="datadog", address=dd.url, secretRef={"name": "dd"}), tmp_path), "q")
        assert reason in str(exc.value) and "wrong" not in str(exc.value) and "query=" not in str(exc.value)
    finally:
        dd.close()


def test_datadog_without_keys_says_where_to_put_them(tmp_path: Path):
    b = backend(provider(type="datadog", address="http://127.0.0.1:1", secretRef={"name": "dd"}), tmp_path)
    with pytest.raises(NoData, match="secret 'dd' has no 'datadog_api_key' \\(set FEDERATION_SECRET_DD_DATADOG_API_KEY"):
        scalar(b, "q")


def test_datadog_values_that_would_change_the_query_are_refused():
    assert datadog.escape("frontend-v2") == "frontend-v2"
    with pytest.raises(ValueError, match="cannot be put in a Datadog query"):
        datadog.escape("web} or {*")


# ----------------------------------------------------------------------------- Graphite


def test_graphite_render_request_and_last_non_null_point(tmp_path: Path):
    g = provider_stubs.graphite([[10.0, 1], [12.5, 2], [None, 3]], auth=("hub", "pw"))
    try:
        secret(tmp_path, "graphite-basic-auth", username="hub", password="pw")
        b = backend(provider(type="graphite", address=g.url, secretRef={"name": "graphite-basic-auth"}), tmp_path)
        query = "target=summarize(\n  asPercent(sumSeries(a.web.ok), sumSeries(a.web.all)),\n  1m, 'avg')"
        assert scalar(b, query) == 12.5
        method, path, params, _, _ = g.asked[0]
        assert (method, path) == ("GET", "/render")
        assert params == {"target": ["summarize( asPercent(sumSeries(a.web.ok), sumSeries(a.web.all)), 1m, 'avg')"],
                          "format": ["json"]}
    finally:
        g.close()


@pytest.mark.parametrize("points, auth, reason", [
    (None, ("hub", "pw"), "empty result"),
    ([[None, 1], [None, 2]], ("hub", "pw"), "empty result"),
    ([[float("nan"), 1]], ("hub", "pw"), "NaN result"),
    ([[1.0, 1]], ("hub", "bad"), "credentials refused (HTTP 401)"),
])
def test_graphite_no_answer_is_no_data(tmp_path: Path, points, auth, reason):
    g = provider_stubs.graphite(points, auth=("hub", "pw"))
    try:
        secret(tmp_path, "g", username=auth[0], password=auth[1])
        with pytest.raises(NoData) as exc:
            scalar(backend(provider(type="graphite", address=g.url, secretRef={"name": "g"}), tmp_path), "target=a.b")
        assert reason in str(exc.value) and "bad" not in str(exc.value)
    finally:
        g.close()


def test_graphite_values_cannot_select_more_or_add_parameters():
    assert graphite.escape("frontend-v2") == "frontend-v2"
    for evil in ("a.*", "x&target=secret.*", "a,b", "{a,b}"):
        with pytest.raises(ValueError):
            graphite.escape(evil)


# ----------------------------------------------------------------------------- InfluxDB

ANNOTATED = """#group,false,false,true,true,false,false
#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,double
#default,_result,,,,,
,result,table,_start,_stop,_time,_value
,,0,2026-12-06T00:00:00Z,2026-12-06T01:00:00Z,2026-12-06T00:30:00Z,3.25
,,0,2026-12-06T00:00:00Z,2026-12-06T01:00:00Z,2026-12-06T00:31:00Z,9

"""


def test_influxdb_flux_request_and_first_record(tmp_path: Path):
    i = provider_stubs.influxdb(ANNOTATED, token="t0k", org="ops")
    try:
        secret(tmp_path, "influx-token", token="t0k", org="ops")
        b = backend(provider(type="influxdb", address=i.url, secretRef={"name": "influx-token"}), tmp_path)
        flux = 'from(bucket: "default") |> range(start: -1m) |> filter(fn: (r) => r["app"] == "web")'
        assert scalar(b, flux) == 3.25
        method, path, params, headers, body = i.asked[0]
        assert (method, path, params) == ("POST", "/api/v2/query", {"org": ["ops"]})
        assert headers["authorization"] == "Token t0k" and headers["content-type"] == "application/vnd.flux"
        assert headers["accept"] == "application/csv" and body.decode() == flux
    finally:
        i.close()


@pytest.mark.parametrize("csv_text, token, reason", [
    ("", "t0k", "empty result"),
    (",result,table,_value\n,,0,\n", "t0k", "empty result"),
    (",result,table,_value\n,,0,NaN\n", "t0k", "NaN result"),
    (ANNOTATED, "nope", "credentials refused (HTTP 401): unauthorized access"),
])
def test_influxdb_no_answer_is_no_data(tmp_path: Path, csv_text, token, reason):
    i = provider_stubs.influxdb(csv_text, token="t0k", org="ops")
    try:
        secret(tmp_path, "ix", token=token, org="ops")
        with pytest.raises(NoData) as exc:
            scalar(backend(provider(type="influxdb", address=i.url, secretRef={"name": "ix"}), tmp_path), "from()")
        assert reason in str(exc.value) and "nope" not in str(exc.value)
    finally:
        i.close()


def test_flux_strings_escape_quotes_and_interpolation():
    assert influxdb.escape('a"b\\c${x}') == 'a\\"b\\\\c\\${x}'


# ----------------------------------------------------------------------------- factory


def test_zone_override_and_unsupported_types(tmp_path: Path):
    zone = fleets.vm_zone("eu", metricProviders=[{"type": "datadog", "address": "https://api.datadoghq.eu"}])
    b = backend(provider(type="datadog", address="https://api.datadoghq.com", secretRef={"name": "dd"}), tmp_path,
                zone=zone)
    assert isinstance(b.inner, datadog.Datadog) and b.inner.base == "https://api.datadoghq.eu" and b.inner.ref == "dd"
    assert backend(provider(type="prometheus"), tmp_path) is None  # the zone's own Prometheus
    with pytest.raises(NoData, match="provider type externalmetrics is not supported here"):
        backend(provider(type="externalmetrics"), tmp_path)


def test_a_backend_outside_the_outbound_policy_is_never_asked(tmp_path: Path):
    """Every provider's query passes the Fleet's outbound policy first: a template cannot make the
    hub query a cloud metadata address (or an Envoy admin port) through a metrics backend."""
    dd = provider_stubs.datadog([[1.0, 0.5]], api_key="k-api", app_key="k-app")
    try:
        secret(tmp_path, "dd", datadog_api_key="k-api", datadog_application_key="k-app")
        b = backend(provider(type="datadog", address="http://169.254.169.254/", secretRef={"name": "dd"}), tmp_path)
        with pytest.raises(Unreachable, match=r"refused by the outbound policy: .*link-local or metadata"):
            scalar(b, "sum:x{*}")
        allowed = backend(provider(type="datadog", address=dd.url, secretRef={"name": "dd"}), tmp_path)
        assert scalar(allowed, "sum:x{*}") == 0.5  # a loopback address is fine for this fleet
    finally:
        dd.close()


def test_secret_env_names():
    assert secrets.env_name("influx-token", "token") == "FEDERATION_SECRET_INFLUX_TOKEN_TOKEN"


# ----------------------------------------------------------------------------- New Relic, Dynatrace


def test_newrelic_nerdgraph_when_an_api_key_is_given(tmp_path: Path):
    nr = provider_stubs.newrelic({"average.duration": 0.25})
    try:
        secret(tmp_path, "nr", newrelic_account_id="1234", newrelic_api_key="nr-api")
        b = backend(provider(type="newrelic", address=f"{nr.url}/graphql", secretRef={"name": "nr"}), tmp_path,
                    interval="2m")
        assert scalar(b, "SELECT average(duration) FROM Transaction WHERE appName = 'web'") == 0.25
        method, path, _, headers, body = nr.asked[0]
        assert (method, path, headers["api-key"]) == ("POST", "/graphql", "nr-api")
        import json
        assert json.loads(body)["variables"] == {
            "query": "SELECT average(duration) FROM Transaction WHERE appName = 'web' SINCE 120 SECONDS ago"}
    finally:
        nr.close()


def test_newrelic_insights_with_a_query_key(tmp_path: Path):
    nr = provider_stubs.newrelic({"result": 3.0})
    try:
        secret(tmp_path, "nr", newrelic_account_id="1234", newrelic_query_key="nr-query")
        b = backend(provider(type="newrelic", address=nr.url, secretRef={"name": "nr"}), tmp_path)
        assert scalar(b, "SELECT count(*) FROM Transaction") == 3.0
        method, path, params, headers, _ = nr.asked[0]
        assert (method, path, headers["x-query-key"]) == ("GET", "/v1/accounts/1234/query", "nr-query")
        assert params == {"nrql": ["SELECT count(*) FROM Transaction SINCE 60 SECONDS ago"]}
    finally:
        nr.close()


@pytest.mark.parametrize("result, status, gql_error, reason", [
    (None, 200, None, "empty result"),
    ({"average": None}, 200, None, "empty result"),
    ({"x": 1.0}, 200, "NRQL Syntax error", "NRQL Syntax error"),
    ({"x": 1.0}, 429, None, "rate limited (HTTP 429, retry in 30s)"),
])
def test_newrelic_no_answer_is_no_data(tmp_path: Path, result, status, gql_error, reason):
    nr = provider_stubs.newrelic(result, status=status, gql_error=gql_error)
    try:
        secret(tmp_path, "nr", newrelic_account_id="1234", newrelic_api_key="nr-api")
        with pytest.raises(NoData) as exc:
            scalar(backend(provider(type="newrelic", address=f"{nr.url}/graphql", secretRef={"name": "nr"}),
                           tmp_path), "SELECT 1")
        assert reason in str(exc.value) and "nr-api" not in str(exc.value)
    finally:
        nr.close()


def test_dynatrace_request_and_value(tmp_path: Path):
    dt = provider_stubs.dynatrace([12.5], token="dt0c01.secret")
    try:
        secret(tmp_path, "dt", dynatrace_token="dt0c01.secret")
        b = backend(provider(type="dynatrace", address=dt.url, secretRef={"name": "dt"}), tmp_path)
        assert scalar(b, 'builtin:service.response.time:filter(eq("dt.entity.service","SERVICE-1"))') == 12.5
        _, path, params, headers, _ = dt.asked[0]
        assert path == "/api/v2/metrics/query" and headers["authorization"] == "Api-Token dt0c01.secret"
        assert params["resolution"] == ["Inf"] and params["to"] == [str(int(AT * 1000))]
        assert params["from"] == [str(int(AT * 1000) - 600_000)]  # ten intervals of 1m, in ms
    finally:
        dt.close()


@pytest.mark.parametrize("values, token, reason", [
    (None, "t", "empty result"), ([None], "t", "empty result"), ([float("nan")], "t", "NaN result"),
    ([1.0], "wrong", "credentials refused (HTTP 401): Missing authorization parameter."),
])
def test_dynatrace_no_answer_is_no_data(tmp_path: Path, values, token, reason):
    dt = provider_stubs.dynatrace(values, token="t")
    try:
        secret(tmp_path, "dt", dynatrace_token=token)
        with pytest.raises(NoData) as exc:
            scalar(backend(provider(type="dynatrace", address=dt.url, secretRef={"name": "dt"}), tmp_path), "m")
        assert reason in str(exc.value) and "wrong" not in str(exc.value)
    finally:
        dt.close()


# ----------------------------------------------------------------------------- CloudWatch


def test_sigv4_matches_aws_published_example():
    # AWS's SigV4 test suite, "get-vanilla": the documented credentials, date and signature.
    from federation.metrics.backends import sigv4

    auth = sigv4.authorization("GET", "/", [], {"Host": "example.amazonaws.com", "X-Amz-Date": "20150830T123600Z"},
                               b"", access_key="AKIDEXAMPLE", secret_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                               region="us-east-1", service="service", amz_date="20150830T123600Z")
    assert auth == ("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                    "SignedHeaders=host;x-amz-date, "
                    "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")


CW_QUERY = """[{"Id": "e1", "Expression": "m1 / m2", "Label": "ErrorRate"},
 {"Id": "m1", "MetricStat": {"Metric": {"Namespace": "MyCluster", "MetricName": "ErrorCount",
   "Dimensions": [{"Name": "appName", "Value": "web.shop"}]}, "Period": 60, "Stat": "Sum"}, "ReturnData": false}]"""


def test_cloudwatch_signed_get_metric_data(tmp_path: Path):
    cw = provider_stubs.cloudwatch([0.02, 0.5], access_key="AKIDTEST", secret_key="s3cr3t", region="eu-west-1")
    try:
        secret(tmp_path, "aws", aws_access_key_id="AKIDTEST", aws_secret_access_key="s3cr3t")
        b = backend(provider(type="cloudwatch", region="eu-west-1", address=cw.url, secretRef={"name": "aws"}),
                    tmp_path)
        assert scalar(b, CW_QUERY) == 0.02  # the first value: CloudWatch lists the newest first
        import json
        _, path, _, headers, body = cw.asked[0]
        req = json.loads(body)
        assert path == "/" and headers["content-type"] == "application/x-amz-json-1.0"
        assert req["StartTime"] == int(AT - 600) and req["EndTime"] == int(AT) and req["MaxDatapoints"] == 20
        assert req["MetricDataQueries"][0]["Expression"] == "m1 / m2"
        assert "s3cr3t" not in headers["authorization"]
    finally:
        cw.close()


@pytest.mark.parametrize("values, secret_key, throttle, reason", [
    (None, "s3cr3t", False, "empty result"),
    ([], "s3cr3t", False, "empty result"),
    ([1.0], "wrong", False, "credentials refused (HTTP 403): The request signature we calculated"),
    ([1.0], "s3cr3t", True, "rate limited (throttled): Rate exceeded"),
])
def test_cloudwatch_no_answer_is_no_data(tmp_path: Path, values, secret_key, throttle, reason):
    cw = provider_stubs.cloudwatch(values, throttle=throttle)
    try:
        secret(tmp_path, "aws", aws_access_key_id="AKIDTEST", aws_secret_access_key=secret_key)
        with pytest.raises(NoData) as exc:
            scalar(backend(provider(type="cloudwatch", region="eu-west-1", address=cw.url, secretRef={"name": "aws"}),
                           tmp_path), CW_QUERY)
        assert reason in str(exc.value) and "wrong" not in str(exc.value)
    finally:
        cw.close()


def test_cloudwatch_needs_a_region_and_a_json_query(tmp_path: Path):
    with pytest.raises(NoData, match="needs a region"):
        backend(provider(type="cloudwatch"), tmp_path)
    b = backend(provider(type="cloudwatch", region="eu-west-1", address="http://127.0.0.1:1"), tmp_path)
    with pytest.raises(NoData, match="not a JSON list of MetricDataQueries"):
        scalar(b, "SELECT 1")


def test_a_rotated_secret_is_read_at_the_next_query(tmp_path: Path):
    i = provider_stubs.influxdb(ANNOTATED, token="new", org="ops")
    try:
        secret(tmp_path, "ix", token="old", org="ops")
        b = backend(provider(type="influxdb", address=i.url, secretRef={"name": "ix"}), tmp_path)
        with pytest.raises(NoData, match="credentials refused"):
            scalar(b, "from()")
        secret(tmp_path, "ix", token="new")
        assert scalar(b, "from()") == 3.25  # the same backend, kept across ticks
    finally:
        i.close()


# ----------------------------------------------------------------------------- Google Cloud Monitoring


@functools.cache
def service_account(name: str = "hub") -> tuple[dict, bytes]:
    """A service account JSON key (its token_uri set by each test) and its public key; one per name."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return ({"type": "service_account", "project_id": "shop-prod", "private_key_id": "k1", "private_key": pem,
             "client_email": "hub@shop-prod.iam.gserviceaccount.com", "token_uri": ""}, public)


@pytest.mark.parametrize("points, expected", [([{"doubleValue": 0.75}], 0.75), ([{"int64Value": "42"}], 42.0),
                                              (None, None), ([{"doubleValue": "NaN"}], None)])
def test_stackdriver_mql_with_a_service_account_token(tmp_path: Path, points, expected):
    key, public = service_account()
    g = provider_stubs.google(public, points)
    try:
        import json
        key = {**key, "token_uri": f"{g.url}/token"}
        secret(tmp_path, "gcloud-sa", project="shop-prod", serviceAccountKey=json.dumps(key))
        b = backend(provider(type="stackdriver", address=g.url, secretRef={"name": "gcloud-sa"}), tmp_path)
        mql = "fetch k8s_container | metric 'istio.io/service/server/response_latencies' | within 5m"
        if expected is None:
            with pytest.raises(NoData, match=r"empty result|NaN result"):
                scalar(b, mql)
        else:
            assert scalar(b, mql) == expected
            assert scalar(b, mql) == expected  # the token is kept: asked for once
        paths = [p for _, p, *_ in g.asked]
        assert paths[0] == "/token" and paths.count("/token") == 1
        assert json.loads(g.asked[1][4]) == {"query": mql}
    finally:
        g.close()


def test_stackdriver_a_key_the_token_endpoint_refuses_is_no_data(tmp_path: Path):
    import json

    key, _ = service_account()
    _, other_public = service_account("other")
    g = provider_stubs.google(other_public, [{"doubleValue": 1.0}])  # trusts another key
    try:
        key = {**key, "token_uri": f"{g.url}/token"}
        secret(tmp_path, "sa", project="shop-prod", serviceAccountKey=json.dumps(key))
        with pytest.raises(NoData) as exc:
            scalar(backend(provider(type="stackdriver", address=g.url, secretRef={"name": "sa"}), tmp_path), "fetch x")
        assert "HTTP 400: invalid_grant" in str(exc.value) and "PRIVATE KEY" not in str(exc.value)
    finally:
        g.close()


def test_provider_headers_are_sent_and_cannot_replace_the_credentials(tmp_path: Path):
    dd = provider_stubs.datadog([[1.0, 2.0]], api_key="k-api", app_key="k-app")
    try:
        secret(tmp_path, "dd", datadog_api_key="k-api", datadog_application_key="k-app")
        b = backend(provider(type="datadog", address=dd.url, secretRef={"name": "dd"},
                             headers={"X-Team": ["shop", "web"], "dd-api-key": ["spoofed"]}), tmp_path)
        assert scalar(b, "q") == 2.0
        headers = dd.asked[0][3]
        assert headers["x-team"] == "shop, web" and headers["dd-api-key"] == "k-api"
        raw = [k.lower() for k in dd.raw_headers[0]]
        assert raw.count("dd-api-key") == 1
    finally:
        dd.close()


def test_a_template_s_own_prometheus_gets_the_provider_headers_but_keeps_its_credentials(tmp_path: Path):
    prom = provider_stubs.prometheus("0.5")
    try:
        secret(tmp_path, "tenant", token="tok")
        b = backend(provider(type="prometheus", address=prom.url, secretRef={"name": "tenant"},
                             headers={"X-Scope-OrgID": ["shop"], "Authorization": ["Bearer spoofed"]}), tmp_path)
        assert scalar(b, "up") == 0.5
        headers = prom.asked[0][3]
        assert headers["x-scope-orgid"] == "shop" and headers["authorization"] == "Bearer tok"
    finally:
        prom.close()


# ----------------------------------------------------------------------------- Splunk (SignalFlow)


def test_splunk_request_shape_and_last_value(tmp_path: Path, caplog):
    sf = provider_stubs.splunk([("AAA", 0.25), ("AAA", None), ("AAA", 0.75), ("AAA", None)], token="sf-secret")
    try:
        secret(tmp_path, "sfx", sf_token_key="sf-secret")
        b = backend(provider(type="splunk", address=sf.url, secretRef={"name": "sfx"}), tmp_path, interval="2m")
        program = "data('requests', filter=filter('version', 'v2')).sum().publish()"
        with caplog.at_level(logging.DEBUG):
            assert scalar(b, program) == 0.75
        method, path, params, headers, body = sf.asked[0]
        assert (method, path, body.decode()) == ("POST", "/v2/signalflow/execute", program)
        assert headers["x-sf-token"] == "sf-secret" and headers["content-type"] == "text/plain"
        assert params["stop"] == [str(int(AT * 1000))] and params["start"] == [str(int(AT * 1000) - 20 * 60_000)]
        assert params["immediate"] == ["true"]
        assert "sf-secret" not in caplog.text
    finally:
        sf.close()


@pytest.mark.parametrize("points, status, token, kw, error, reason", [
    (None, 200, "t", {}, NoData, "empty result"),
    ([("A", None), ("A", None)], 200, "t", {}, NoData, "empty result"),
    ([("A", float("nan"))], 200, "t", {}, NoData, "NaN result"),
    ([("A", 1.0), ("B", 2.0)], 200, "t", {}, NoData, "more than one time series"),
    ([("A", 1.0)], 200, "t", {"error": "Unknown function 'dta'"}, Unreachable, "Unknown function 'dta'"),
    ([("A", 1.0)], 200, "t", {"abort": True}, Unreachable, "computation aborted: job exceeded its time limit"),
    ([("A", 1.0)], 429, "t", {}, Unreachable, "rate limited (HTTP 429, retry in 9s)"),
    ([("A", 1.0)], 500, "t", {}, Unreachable, "HTTP 500: Internal error"),
    ([("A", 1.0)], 200, "wrong", {}, Unreachable, "credentials refused (HTTP 401): Unauthorized"),
])
def test_splunk_no_answer_is_no_data(tmp_path: Path, points, status, token, kw, error, reason):
    sf = provider_stubs.splunk(points, token="t", status=status, **kw)
    try:
        secret(tmp_path, "sfx", sf_token_key=token)
        with pytest.raises(error) as exc:
            scalar(backend(provider(type="splunk", address=sf.url, secretRef={"name": "sfx"}), tmp_path), "p")
        assert reason in str(exc.value) and "wrong" not in str(exc.value)
    finally:
        sf.close()


def test_splunk_address_realm_token_and_escape(tmp_path: Path):
    assert splunk.stream_base("https://api.eu0.signalfx.com") == "https://stream.eu0.signalfx.com"
    assert splunk.stream_base("wss://stream.us1.signalfx.com/") == "https://stream.us1.signalfx.com"
    with pytest.raises(NoData, match="splunk: the provider has no address"):
        backend(provider(type="splunk"), tmp_path)
    b = backend(provider(type="splunk", address="http://127.0.0.1:1"), tmp_path)
    with pytest.raises(NoData, match="secret 'splunk' has no 'sf_token_key' \\(set FEDERATION_SECRET_SPLUNK_SF_TOKEN_KEY"):
        scalar(b, "p")
    assert splunk.escape("frontend-v2") == "frontend-v2"
    with pytest.raises(ValueError, match="SignalFlow string"):
        splunk.escape("x') or data('y")
