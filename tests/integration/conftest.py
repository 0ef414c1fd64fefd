"""Fixtures starting real parts (Envoy, Prometheus, app servers) as process groups, always stopped."""

from __future__ import annotations

import json
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from federation.demo.procs import Supervisor, wait_for
from tests import real_kube

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this directory is an integration test (a ``pytestmark`` in a conftest marks
    nothing: markers apply from test modules; this hook applies it)."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def envoy_bin() -> str:
    here = Path(sys.executable).parent / "envoy"
    return str(here) if here.exists() else (shutil.which("envoy") or "envoy")


@pytest.fixture(scope="session")
def kube_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[real_kube.Cluster]:
    """One real kube-apiserver (and its etcd) for the session, stopped by process group at the end."""
    work = tmp_path_factory.mktemp("kube")
    sup = Supervisor(work / "logs")
    cluster = None
    try:
        cluster = real_kube.start(work, sup)
        yield cluster
    finally:
        try:
            if cluster is not None:
                cluster.close()
        finally:
            sup.stop_all()  # etcd and kube-apiserver by process group, whatever happened before


@pytest.fixture
def k8s(kube_session: real_kube.Cluster) -> real_kube.Cluster:
    """The session's API server with what earlier tests left removed."""
    kube_session.reset()
    return kube_session


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Supervisor]:
    sup = Supervisor(tmp_path / "logs")
    try:
        yield sup
    finally:
        sup.stop_all()


def up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def start_app(procs: Supervisor, name: str, version: str, zone: str, env: dict[str, str] | None = None) -> int:
    port = free_port()
    app = str(Path(sys.executable).parent / "fed-demo-app")
    procs.start(name, [app, "--version", version, "--zone", zone, "--port", str(port)], env=env)
    wait_for(lambda: up(f"http://127.0.0.1:{port}/healthz"), 20, name)
    return port


def static_cluster(name: str, port: int) -> dict:
    return {"name": name, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}


def hcm(stat_prefix: str, route: dict) -> dict:
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": stat_prefix, **route,
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}


def bootstrap(admin: int, listener: int, clusters: list[dict], route: dict) -> dict:
    return {"node": {"id": "test", "cluster": "test"},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
            "static_resources": {"listeners": [{"name": "l", "address": {"socket_address": {
                "address": "127.0.0.1", "port_value": listener}}, "filter_chains": [{"filters": [hcm("edge", route)]}]}],
                "clusters": clusters}}


def start_envoy(procs: Supervisor, tmp: Path, name: str, boot: dict) -> None:
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(boot))
    admin = boot["admin"]["address"]["socket_address"]["port_value"]
    p = procs.start(name, [envoy_bin(), "-c", str(path), "--log-level", "warn", "--base-id", str(admin)])

    def ready() -> bool:
        assert p.alive(), f"{name} exited:\n{p.tail()}"
        return up(f"http://127.0.0.1:{admin}/ready")

    wait_for(ready, 30, name)
