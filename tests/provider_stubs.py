"""Loopback servers that speak metric backends' documented HTTP APIs, for tests: each records what
it was asked (path, query parameters, headers) and answers what the test sets. Stopped with ``close``.

- ``Prometheus``: ``GET /api/v1/query`` (instant vector).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Answer = tuple[int, dict[str, str], bytes]  # status, headers, body


def json_answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Answer:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body).encode()


class Stub:
    """A loopback HTTP server: ``answer(method, path, params, headers, body)`` decides each reply."""

    def __init__(self, answer: Callable[[str, str, dict[str, list[str]], dict[str, str], bytes], Answer]) -> None:
        self.asked: list[tuple[str, str, dict[str, list[str]], dict[str, str], bytes]] = []
        self.raw_headers: list[list[str]] = []  # header names as sent, repeats kept
        self.lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                params = parse_qs(parts.query)
                if self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
                    for k, v in parse_qs(body.decode()).items():
                        params.setdefault(k, []).extend(v)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with outer.lock:
                    outer.asked.append((self.command, parts.path, params, headers, body))
                    outer.raw_headers.append(list(self.headers.keys()))
                status, out_headers, out = answer(self.command, parts.path, params, headers, body)
                self.send_response(status)
                for k, v in out_headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = _serve
            do_POST = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def queries(self, param: str = "query") -> list[str]:
        with self.lock:
            return [p[param][0] for _, _, p, _, _ in self.asked if param in p]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def prometheus(value: str | Callable[[str], str] = "42") -> Stub:
    """Every instant query answers one sample of ``value`` (or ``value(query)``); "" is an empty
    vector, "NaN" a NaN sample."""
    def answer(method: str, path: str, params: dict[str, list[str]], headers: dict[str, str], body: bytes) -> Answer:
        v = value(params.get("query", [""])[0]) if callable(value) else value
        result = [] if v == "" else [{"metric": {}, "value": [0, v]}]
        return json_answer({"status": "success", "data": {"resultType": "vector", "result": result}})
    return Stub(answer)


def datadog(pointlist: list[list[float | None]] | None, api_key: str = "dd-api", app_key: str = "dd-app",
            status: int = 200) -> Stub:
    """``GET /api/v1/query`` as Datadog documents it: both keys checked (403 ``{"errors": [...]}``
    otherwise), ``query``/``from``/``to`` required (400), ``status`` 429 answers with Datadog's
    rate-limit headers; a None ``pointlist`` answers no series."""
    def answer(method: str, path: str, params: dict[str, list[str]], headers: dict[str, str], body: bytes) -> Answer:
        if path != "/api/v1/query" or method != "GET":
            return json_answer({"errors": ["Not found"]}, 404)
        if headers.get("dd-api-key") != api_key or headers.get("dd-application-key") != app_key:
            return json_answer({"errors": ["Forbidden"]}, 403)
        if status == 429:
            return json_answer({"errors": ["Rate limit of 300 requests in 3600 seconds reached."]}, 429,
                               {"X-RateLimit-Limit": "300", "X-RateLimit-Period": "3600",
                                "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "17"})
        if status != 200:
            return json_answer({"errors": ["Internal error"]}, status)
        if not all(params.get(k) for k in ("query", "from", "to")):
            return json_answer({"errors": ["Missing required parameter"]}, 400)
        series = [] if pointlist is None else [{"metric": "m", "pointlist": pointlist, "scope": "*"}]
        return json_answer({"status": "ok", "res_type": "time_series", "series": series,
                            "from_date": int(params["from"][0]) * 1000, "to_date": int(params["to"][0]) * 1000,
                            "query": params["query"][0]})
    return Stub(answer)


def graphite(datapoints: list[list[float | None]] | None, auth: tuple[str, str] | None = None) -> Stub:
    """``GET /render?target=...&format=json`` as graphite-web answers it; basic auth when given."""
    import base64

    def answer(method: str, path: str, params: dict[str, list[str]], headers: dict[str, str], body: bytes) -> Answer:
        if auth is not None:
            want = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            if headers.get("authorization") != want:
                return 401, {"Content-Type": "text/html"}, b"<h1>Unauthorized</h1>"
        if path != "/render" or params.get("format") != ["json"]:
            return 404, {"Content-Type": "text/html"}, b"<h1>Not Found</h1>"
        if "target" not in params:
            return 400, {"Content-Type": "text/plain"}, b"No target specified"
        series = [] if datapoints is None else [{"target": params["target"][0], "tags": {}, "datapoints": datapoints}]
        return json_answer(series)
    return Stub(answer)


def influxdb(csv_text: str, token: str = "tok", org: str = "ops") -> Stub:
    """``POST /api/v2/query?org=`` with a Flux body as InfluxDB 2 answers it: ``Token`` auth (401
    ``{"code": "unauthorized"}``), the org required, annotated CSV back."""
    def answer(method: str, path: str, params: dict[str, list[str]], headers: dict[str, str], body: bytes) -> Answer:
        if path != "/api/v2/query" or method != "POST":
            return json_answer({"code": "not found", "message": "path not found"}, 404)
        if headers.get("authorization") != f"Token {token}":
            return json_answer({"code": "unauthorized", "message": "unauthorized access"}, 401)
        if params.get("org") != [org]:
            return json_answer({"code": "not found", "message": f"organization name \"{params.get('org')}\" not found"},
                               404)
        if headers.get("content-type") != "application/vnd.flux" or not body:
            return json_answer({"code": "invalid", "message": "failed to decode request body"}, 400)
        return 200, {"Content-Type": "text/csv; charset=utf-8"}, csv_text.encode()
    return Stub(answer)


def newrelic(result: dict[str, Any] | None, account: str = "1234", api_key: str = "nr-api",
             query_key: str = "nr-query", status: int = 200, gql_error: str | None = None) -> Stub:
    """New Relic: NerdGraph ``POST /graphql`` (``Api-Key``; ``{"data": {"actor": {"account": {"nrql":
    {"results": [...]}}}}}`` or ``{"errors": [{"message"}]}``) and Insights ``GET
    /v1/accounts/<id>/query?nrql=`` (``X-Query-Key``; ``{"results": [...]}``)."""
    def answer(method: str, path: str, params: dict[str, list[str]], headers: dict[str, str], body: bytes) -> Answer:
        if status != 200:
            return json_answer({"error": "Too many requests"} if status == 429 else {"error": "oops"}, status,
                               {"Retry-After": "30"} if status == 429 else None)
        results = [] if result is None else [result]
        if method == "POST" and path == "/graphql":
            if headers.get("api-key") != api_key:
                return json_answer({"errors": [{"message": "Invalid API key"}]}, 401)
            req = json.loads(body)
            if f"account(id: {account})" not in req["query"] or "$query: Nrql!" not in req["query"]:
                return json_answer({"errors": [{"message": "Bad query"}]})
            if gql_error:
                return json_answer({"data": None, "errors": [{"message": gql_error}]})
            return json_answer({"data": {"actor": {"account": {"nrql": {"results": results}}}}})
        if method == "GET" and path == f"/v1/accounts/{account}/query":
            if headers.get("x-query-key") != query_key:
                return json_answer({"error": "Invalid query key"}, 403)
            return json_answer({"results": results, "metadata": {}})
        return json_answer({"error": "not found"}, 404)
    return Stub(answer)


def dynatrace(values: list[float | None] | None, token: str = "dt0c01.x") -> Stub:
    """``GET /api/v2/metrics/query`` as Dynatrace documents it: ``Api-Token`` auth (401),
    ``metricSelector`` required (400), ``{"totalCount", "result": [{"metricId", "data": [...]}]}``."""
    def answer(method: str, path: str, params: dict[str, list[str]], headers: dict[str, str], body: bytes) -> Answer:
        if headers.get("authorization") != f"Api-Token {token}":
            return json_answer({"error": {"code": 401, "message": "Missing authorization parameter."}}, 401)
        if path != "/api/v2/metrics/query" or "metricSelector" not in params:
            return json_answer({"error": {"code": 400, "message": "metricSelector is missing"}}, 400)
        data = [] if values is None else [{"dimensions": [], "timestamps": [int(params["to"][0])], "values": values}]
        return json_answer({"totalCount": 1, "nextPageKey": None, "resolution": "Inf",
                            "result": [{"metricId": params["metricSelector"][0], "data": data}]})
    return Stub(answer)


def cloudwatch(values: list[float] | None, access_key: str = "AKIDTEST", secret_key: str = "s3cr3t",
               region: str = "eu-west-1", throttle: bool = False) -> Stub:
    """CloudWatch ``GetMetricData`` over AWS JSON 1.0: the target header, the SigV4 signature (checked
    by recomputing it with the secret, so a header sent unsigned or changed is refused with AWS's 403),
    ``{"MetricDataResults": [...]}``; ``throttle`` answers AWS's 400 Throttling."""
    from federation.metrics.backends import sigv4

    def answer(method: str, path: str, params: dict[str, list[str]], headers: dict[str, str], body: bytes) -> Answer:
        if headers.get("x-amz-target") != "GraniteServiceVersion20100801.GetMetricData":
            return json_answer({"__type": "UnknownOperationException"}, 400)
        auth = headers.get("authorization", "")
        signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";") if "SignedHeaders=" in auth else []
        want = sigv4.authorization(method, path, [], {k: headers.get(k, "") for k in signed}, body,
                                   access_key=access_key, secret_key=secret_key, region=region,
                                   service="monitoring", amz_date=headers.get("x-amz-date", ""))
        if auth != want or "host" not in signed or "x-amz-date" not in signed:
            return json_answer({"__type": "com.amazon.coral.service#InvalidSignatureException",
                                "message": "The request signature we calculated does not match the signature "
                                           "you provided."}, 403)
        if throttle:
            return json_answer({"__type": "com.amazon.coral.availability#ThrottlingException",
                                "message": "Rate exceeded"}, 400)
        req = json.loads(body)
        results = [] if values is None else [{"Id": req["MetricDataQueries"][0]["Id"], "Label": "x",
                                               "Timestamps": [req["EndTime"]] * len(values), "Values": values,
                                               "StatusCode": "Complete"}]
        return 200, {"Content-Type": "application/x-amz-json-1.0"}, json.dumps(
            {"MetricDataResults": results, "Messages": []}).encode()
    return Stub(answer)


def google(public_key_pem: bytes, points: list[dict[str, Any]] | None, project: str = "shop-prod",
           client_email: str = "hub@shop-prod.iam.gserviceaccount.com") -> Stub:
    """Google's OAuth token endpoint (``POST /token``, the JWT-bearer grant: the assertion's RS256
    signature checked with the service account's public key, its claims checked) and Cloud
    Monitoring's ``POST /v3/projects/<p>/timeSeries:query`` (``Bearer`` the token it issued)."""
    import base64

    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    public = serialization.load_pem_public_key(public_key_pem)
    assert isinstance(public, rsa.RSAPublicKey)
    issued = "ya29.test-token"

    def unb64(s: str) -> bytes:
        return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))

    def answer(method: str, path: str, params: dict[str, list[str]], headers: dict[str, str], body: bytes) -> Answer:
        if path == "/token":
            if params.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
                return json_answer({"error": "unsupported_grant_type"}, 400)
            header, claims, sig = params["assertion"][0].split(".")
            try:
                public.verify(unb64(sig), f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
            except InvalidSignature:
                return json_answer({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, 400)
            c = json.loads(unb64(claims))
            if c["iss"] != client_email or "monitoring.read" not in c["scope"] or not c["aud"].endswith("/token"):
                return json_answer({"error": "invalid_grant", "error_description": "Invalid JWT claims."}, 400)
            return json_answer({"access_token": issued, "expires_in": 3599, "token_type": "Bearer"})
        if path == f"/v3/projects/{project}/timeSeries:query" and method == "POST":
            if headers.get("authorization") != f"Bearer {issued}":
                return json_answer({"error": {"code": 401, "message": "Request had invalid authentication "
                                              "credentials.", "status": "UNAUTHENTICATED"}}, 401)
            if "query" not in json.loads(body):
                return json_answer({"error": {"code": 400, "message": "query is required"}}, 400)
            series = [] if points is None else [{"labelValues": [], "pointData": [{"values": points}]}]
            return json_answer({"timeSeriesDescriptor": {}, "timeSeriesData": series})
        return json_answer({"error": {"code": 404, "message": "not found"}}, 404)
    return Stub(answer)
