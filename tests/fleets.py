"""One Fleet builder for tests: zones of either kind with loopback defaults, and a mesh.

``fleet_doc`` gives the document (to write to a file for ``fedctl``), ``fleet`` the validated
model. Every field can be overridden per zone; defaults point nowhere real (port 1, /dev/null).
"""

from __future__ import annotations

from typing import Any

from federation.core import spec as specs


def vm_zone(name: str, *, prometheus: str = "http://127.0.0.1:1", **fields: Any) -> dict[str, Any]:
    return {"name": name, "kind": "vm", "git": {"url": "/dev/null"}, "prometheus": {"url": prometheus},
            "ingress": {"address": "127.0.0.1", "port": 1}, "hosts": [{"address": "127.0.0.1"}],
            "knownHosts": "/dev/null", **fields}


def kube_zone(name: str, git_url: str, kubeconfig: str, *, context: str = "member", **fields: Any) -> dict[str, Any]:
    return {"name": name, "kind": "kubernetes", "git": {"url": git_url, "path": "."},
            "prometheus": {"url": "http://127.0.0.1:1"}, "ingress": {"address": "127.0.0.1", "port": 1},
            "kubeconfig": {"path": kubeconfig, "context": context}, **fields}


def envoy_mesh(git_url: str = "/dev/null", **fields: Any) -> dict[str, Any]:
    return {"provider": "envoy", "git": {"url": git_url}, **fields}


def fleet_doc(zones: list[dict[str, Any]], mesh: dict[str, Any] | None = None, name: str = "t") -> dict[str, Any]:
    return {"apiVersion": specs.API_VERSION, "kind": "Fleet", "metadata": {"name": name},
            "spec": {"zones": zones, "mesh": mesh or envoy_mesh()}}


def fleet(zones: list[dict[str, Any]], mesh: dict[str, Any] | None = None, name: str = "t") -> specs.Fleet:
    return specs.Fleet.model_validate(fleet_doc(zones, mesh, name))
