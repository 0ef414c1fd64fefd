"""Benchmark: the local Kubernetes API server of the tests (``federation.demo.kubeapi``). Prints the
binaries' sizes, kube-apiserver's start time (launch to /readyz ok, etcd already up), the time to
apply the CRDs, and the resident memory of kube-apiserver and etcd once ready."""

from __future__ import annotations

import time
from pathlib import Path

from federation.demo import kubeapi
from federation.demo.procs import Supervisor
from tests import real_kube


def test_bench_local_kube_apiserver(tmp_path: Path):
    bin_dir = real_kube.binaries()
    sup = Supervisor(tmp_path / "logs")
    server = None
    try:
        t0 = time.monotonic()
        server = kubeapi.start(bin_dir, tmp_path / "kube", sup, crds=False)
        up = time.monotonic() - t0
        t1 = time.monotonic()
        for f in sorted(kubeapi.CRD_DIR.glob("*.yaml")):
            server.apply_file(f)
        crds = time.monotonic() - t1
        sizes = {b: (bin_dir / b).stat().st_size / 2**20 for b in ("kube-apiserver", "etcd")}
        print(f"\nbinaries: kube-apiserver {sizes['kube-apiserver']:.1f} MiB, etcd {sizes['etcd']:.1f} MiB ({bin_dir})")
        print(f"kube-apiserver ready in {server.started_in:.2f} s (etcd and kube-apiserver from cold: {up:.2f} s); "
              f"3 CRDs applied and established in {crds:.2f} s")
        print(f"RSS once ready: kube-apiserver {server.rss_kib('apiserver') / 1024:.0f} MiB, "
              f"etcd {server.rss_kib('etcd') / 1024:.0f} MiB")
        assert server.request("GET", "/version").json()["gitVersion"].startswith("v1.")
    finally:
        if server is not None:
            server.stop()  # closes its HTTPS client too (an unclosed socket fails a later test)
        sup.stop_all()
