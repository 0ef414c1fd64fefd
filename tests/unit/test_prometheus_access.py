"""Prometheus access per zone: bearer token, basic auth, custom CA — seen by a real HTTP(S) server."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest

from federation.core.spec import PrometheusSource
from federation.metrics.prometheus import Client, NoData
from tests import fleets


class Prom:
    """Answers /api/v1/query with one sample, recording the Authorization header of each request."""

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        self.auth: list[str] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:
                outer.auth.append(self.headers.get("Authorization", ""))
                if self.path.startswith("/api/v1/query_range"):
                    # canary (frontend-v2) p99 around 80 ms, primary (frontend-v1) around 50 ms
                    slow = "frontend-v2" in unquote(self.path)
                    values = [[i, str((80 if slow else 50) + (i % 5))] for i in range(30)]
                    body = json.dumps({"status": "success", "data": {"resultType": "matrix",
                                                                     "result": [{"metric": {}, "values": values}]}}).encode()
                else:
                    body = json.dumps({"status": "success", "data": {"resultType": "vector",
                                                                     "result": [{"metric": {}, "value": [0, "42"]}]}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.scheme = "http"
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_bearer_token_from_env_and_basic_auth_from_file(tmp_path: Path, monkeypatch):
    p = Prom()
    try:
        monkeypatch.setenv("PROM_TOKEN", "tok-123")
        src = PrometheusSource.model_validate({"url": p.url, "auth": {"bearerTokenEnv": "PROM_TOKEN"}})
        assert asyncio.run(Client(src).scalar("up")) == 42.0
        assert p.auth[-1] == "Bearer tok-123"
        (tmp_path / "pw").write_text("s3cret\n")
        src = PrometheusSource.model_validate({"url": p.url, "auth": {"username": "hub", "passwordFile": str(tmp_path / "pw")}})
        asyncio.run(Client(src).scalar("up"))
        assert p.auth[-1] == "Basic " + base64.b64encode(b"hub:s3cret").decode()
    finally:
        p.close()


def test_custom_ca_is_trusted_and_an_unknown_one_is_not(tmp_path: Path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    p = Prom(tls=(cert, key))
    try:
        src = PrometheusSource.model_validate({"url": p.url, "auth": {"caFile": str(cert)}, "timeout": "3s"})
        assert asyncio.run(Client(src).scalar("up")) == 42.0
        plain = PrometheusSource.model_validate({"url": p.url, "timeout": "3s"})
        with pytest.raises(NoData, match="SSL"):
            Client(plain).scalar_sync("up")
    finally:
        p.close()


def test_fedctl_metrics_prints_global_and_zone_figures(tmp_path: Path):
    from tests.cli import fedctl

    p = Prom()
    try:
        fleet = fleets.fleet_doc([fleets.vm_zone(z, prometheus=p.url) for z in ("eks", "vms")], name="m")
        canary = {"apiVersion": "federation.io/v1alpha1", "kind": "FederatedCanary", "metadata": {"name": "frontend"},
                  "spec": {"service": {"name": "frontend"}, "primary": {"version": "v1", "zones": ["vms"]},
                           "canary": {"version": "v2", "zones": ["eks"]},
                           "analysis": {"stepWeight": 10, "metrics": [
                               {"name": "request-success-rate", "thresholdRange": {"min": 99}}]}}}
        (tmp_path / "fleet.json").write_text(json.dumps(fleet))
        (tmp_path / "canary.json").write_text(json.dumps(canary))
        r = fedctl("metrics", "frontend", "--fleet", str(tmp_path / "fleet.json"), "--canary",
                   str(tmp_path / "canary.json"), "-o", "json")
        assert r.returncode == 0, r.stderr
        checks = json.loads(r.stdout)["checks"]
        assert [(c["zone"], c["value"], c["outcome"]) for c in checks] == [("global", 100.0, "pass"), ("eks", 100.0, "pass")]
        canary["spec"]["analysis"]["metrics"][0]["thresholdRange"] = {"max": 50}
        (tmp_path / "canary.json").write_text(json.dumps(canary))
        r = fedctl("metrics", "frontend", "--fleet", str(tmp_path / "fleet.json"), "--canary",
                   str(tmp_path / "canary.json"))
        assert r.returncode == 1 and "fail" in r.stdout
    finally:
        p.close()


def test_compare_primary_runs_range_queries_for_both_sides_and_judges():
    from federation.core import analysis as core_analysis
    from federation.core import spec as specs
    from federation.metrics.analysis import Analyzer

    p = Prom()
    try:
        fleet = specs.Fleet.model_validate({"apiVersion": "federation.io/v1alpha1", "kind": "Fleet", "metadata": {"name": "m"},
            "spec": {"zones": [{"name": z, "kind": "vm", "git": {"url": "/dev/null"}, "prometheus": {"url": p.url},
                                "ingress": {"address": "127.0.0.1", "port": 1}, "hosts": [{"address": "127.0.0.1"}],
                                "knownHosts": "/dev/null"} for z in ("eks", "vms")],
                     "mesh": {"provider": "envoy", "git": {"url": "/dev/null"}}}})
        spec = specs.FederatedCanary.model_validate({"apiVersion": "federation.io/v1alpha1", "kind": "FederatedCanary",
            "metadata": {"name": "frontend"},
            "spec": {"service": {"name": "frontend"}, "primary": {"version": "v1", "zones": ["vms"]},
                     "canary": {"version": "v2", "zones": ["eks"]},
                     "analysis": {"stepWeight": 10, "threshold": 1, "metrics": [
                         {"name": "request-duration", "compare": "primary", "interval": "5m"}]}}}).spec
        samples = asyncio.run(Analyzer(fleet).collect(spec, "shop", at=1000.0))
        by = {s.zone: s for s in samples}
        assert by[None].comparison == "fail" and by["eks"].comparison == "fail"
        assert by[None].value == pytest.approx(82.0) and "worse by" in by[None].reason
        verdict = core_analysis.judge(spec, samples)
        assert verdict.failed
    finally:
        p.close()
