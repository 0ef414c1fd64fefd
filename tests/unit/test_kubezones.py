"""Where the demo finds kube-apiserver and etcd: only where scripts/build-kube puts them, never
building; absent or not executable means no Kubernetes zones (the demo falls back to VM zones)."""

from __future__ import annotations

from pathlib import Path

import pytest

from federation.demo import kubezones


def version() -> str:
    gomod = Path(__file__).resolve().parents[2] / "tests" / "kube" / "go.mod"
    return next(line.split()[1] for line in gomod.read_text().splitlines() if line.startswith("\tk8s.io/kubernetes ")
                or line.startswith("k8s.io/kubernetes "))


def test_binaries_only_when_both_are_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FEDERATION_KUBE_CACHE", str(tmp_path))
    assert kubezones.binaries() is None
    bin_dir = tmp_path / version() / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "kube-apiserver").write_text("")
    (bin_dir / "kube-apiserver").chmod(0o755)
    assert kubezones.binaries() is None  # etcd missing
    (bin_dir / "etcd").write_text("")
    assert kubezones.binaries() is None  # etcd not executable
    (bin_dir / "etcd").chmod(0o755)
    assert kubezones.binaries() == bin_dir


def test_a_zone_becomes_a_kubernetes_zone_in_its_own_namespace():
    vm = {"name": "eks", "kind": "vm", "git": {"url": "/x.git"}, "hosts": [{"address": "127.0.0.1"}],
          "knownHosts": "k", "identityFile": "i", "labels": {"simulates": "kubernetes"}}
    z = kubezones.fleet_zone(vm, Path("/tmp/hub.kubeconfig"))
    assert z["kind"] == "kubernetes" and z["flux"] == {"workloadNamespace": "shop-eks"}
    assert z["kubeconfig"] == {"path": "/tmp/hub.kubeconfig", "context": "member"}
    assert not {"hosts", "knownHosts", "identityFile"} & set(z)
