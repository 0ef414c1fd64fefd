"""The local kubelet stand-in (``demo.kubelet``) on the real kube-apiserver: the Deployments the hub
renders run as local demo-app processes, their status is what the hub reads (readiness through the
hub's own ``deployment_ready``), a new template rolls, a template that never gets ready reports
ProgressDeadlineExceeded, and a deleted Deployment's pods stop."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from federation.demo.kubelet import LocalKubelet
from federation.demo.procs import Supervisor, wait_for
from federation.runtimes import kubernetes as kube
from federation.runtimes import workloads
from tests.real_kube import Cluster

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
EKS = yaml.safe_load((ROOT / "clusters" / "eks" / "frontend.yaml").read_text())["spec"]["versions"]
TARGET = workloads.Target("eks", "frontend", "shop", 8080)


def rendered(version: str, base: str | None = None, **changes: object) -> list[dict]:
    w = workloads.workload("eks", "frontend.yaml", version, {**EKS[base or version], **changes})
    return workloads.render_version(TARGET, version, w)


def test_the_kubelet_runs_what_the_hub_renders(tmp_path: Path, k8s: Cluster):
    sup = Supervisor(tmp_path / "logs")
    kubelet = LocalKubelet(k8s.server, "shop", "eks", sup, str(Path(sys.executable).parent / "fed-demo-app"))
    hub = kube.FluxZone(k8s.api(k8s.member_kc))  # the hub's own view, with its token

    def ready(name: str) -> float | None:
        return asyncio.run(hub.deployment_ready("shop", name, 100))[0]

    def synced_until(check, what: str, timeout: float = 90.0) -> None:  # type: ignore[no-untyped-def]
        def step() -> bool:
            kubelet.sync()
            return bool(check())
        wait_for(step, timeout, what, interval=0.3)

    try:
        k8s.server.apply(rendered("v2", replicas=2))
        synced_until(lambda: ready("frontend-v2") == 100.0, "frontend-v2 ready")
        ports = kubelet.endpoints({"app": "frontend", "version": "v2"})
        assert len(ports) == 2
        assert httpx.get(f"http://127.0.0.1:{ports[0]}/").text.startswith("frontend v2 zone=eks")
        d = k8s.admin.apps.read_namespaced_deployment_status("frontend-v2", "shop")
        assert {c.type: c.reason for c in d.status.conditions} == {"Available": "MinimumReplicasAvailable",
                                                                   "Progressing": "NewReplicaSetAvailable"}

        # A new template (an image bump): new pods first, the old ones stop once they are ready.
        k8s.server.apply(rendered("v2", replicas=2, image="registry.example.com/shop/frontend:2.0.1"))
        assert ready("frontend-v2") == 0.0  # generation 2 not observed yet
        synced_until(lambda: ready("frontend-v2") == 100.0 and len(kubelet.pods) == 2, "frontend-v2 rolled")
        assert set(kubelet.endpoints({"version": "v2"})).isdisjoint(ports)

        # A build whose pods never get ready (the app exits at start on a bad setting):
        # ProgressDeadlineExceeded, as the hub reads it.
        k8s.server.apply(rendered("v3", "v2", replicas=1, env={"FAULT_RATE": "not-a-number"}, progressDeadlineSeconds=2))
        def pde() -> bool:
            return kube.PROGRESS_DEADLINE in asyncio.run(hub.deployment_ready("shop", "frontend-v3", 100))[1]
        synced_until(pde, "frontend-v3 past its deadline", timeout=20)
        assert kubelet.endpoints({"version": "v3"}) == []

        # Deleted (Flux pruned it): its pods stop.
        k8s.admin.apps.delete_namespaced_deployment("frontend-v3", "shop")
        pids = [p.proc for p in kubelet.pods if p.deployment == "frontend-v3"]
        synced_until(lambda: not any(p.deployment == "frontend-v3" for p in kubelet.pods), "frontend-v3's pods gone")
        assert not any(p.alive() for p in pids)
    finally:
        kubelet.stop()
        sup.stop_all()


def test_a_crashed_pod_is_restarted_with_a_back_off(tmp_path: Path, k8s: Cluster):
    """A pod's process that exits is started again in place (restartCount 1) and gets ready again;
    the next crash waits out the back-off first (CrashLoopBackOff), on the kubelet's own clock."""
    import os
    import signal

    sup = Supervisor(tmp_path / "logs")
    now = [0.0]
    kubelet = LocalKubelet(k8s.server, "shop", "eks", sup, str(Path(sys.executable).parent / "fed-demo-app"),
                           clock=lambda: now[0], backoff=10.0)
    hub = kube.FluxZone(k8s.api(k8s.member_kc))

    def ready() -> float | None:
        return asyncio.run(hub.deployment_ready("shop", "frontend-v2", 100))[0]

    def synced_until(check, what: str, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
        def step() -> bool:
            kubelet.sync()
            return bool(check())
        wait_for(step, timeout, what, interval=0.3)

    def crash() -> int:
        (pod,) = kubelet.pods
        os.killpg(pod.proc.pid, signal.SIGKILL)  # the pod's own process group, started by this kubelet
        wait_for(lambda: not pod.proc.alive(), 10, "the pod's process gone")
        return pod.port

    try:
        k8s.server.apply(rendered("v2", replicas=1))
        synced_until(lambda: ready() == 100.0, "frontend-v2 ready")
        assert kubelet.restart_counts("frontend-v2") == [0]
        port = crash()
        synced_until(lambda: kubelet.restart_counts("frontend-v2") == [1] and ready() == 100.0,
                     "frontend-v2 restarted and ready again")
        assert kubelet.endpoints({"version": "v2"}) == [port]  # in place: same pod, same port
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
        # The second crash waits out the back-off (10 s on the kubelet's clock), then restarts.
        crash()
        kubelet.sync()
        now[0] += 9.0
        kubelet.sync()
        assert kubelet.restart_counts("frontend-v2") == [1] and kubelet.endpoints({"version": "v2"}) == []
        now[0] += 1.5
        synced_until(lambda: kubelet.restart_counts("frontend-v2") == [2] and ready() == 100.0,
                     "frontend-v2 restarted after its back-off")
    finally:
        kubelet.stop()
        sup.stop_all()


def test_a_deleted_pod_leaves_the_endpoints_at_once_and_serves_through_its_pre_stop_sleep(tmp_path: Path, k8s: Cluster):
    """Kubernetes' termination: out of the Service's endpoints when deleted, the process still
    answering through the preStop sleep the hub renders (``shutdownDelaySeconds``), then stopped.
    Without it a retired version's pods died while the zone's mesh still routed to them (the soak's
    503s through the Kubernetes zone)."""
    sup = Supervisor(tmp_path / "logs")
    now = [0.0]
    kubelet = LocalKubelet(k8s.server, "shop", "eks", sup, str(Path(sys.executable).parent / "fed-demo-app"),
                           clock=lambda: now[0])
    try:
        deployment = rendered("v2", replicas=1, shutdownDelaySeconds=4)
        assert deployment[0]["spec"]["template"]["spec"]["containers"][0]["lifecycle"] == \
            {"preStop": {"sleep": {"seconds": 4}}}
        k8s.server.apply(deployment)

        def step() -> bool:
            kubelet.sync()
            return bool(kubelet.endpoints({"version": "v2"}))
        wait_for(step, 60, "frontend-v2 ready", interval=0.3)
        [port] = kubelet.endpoints({"version": "v2"})
        [pod] = kubelet.pods

        k8s.admin.apps.delete_namespaced_deployment("frontend-v2", "shop")
        now[0] = 1.0
        kubelet.sync()
        assert kubelet.endpoints({"version": "v2"}) == []  # out of the endpoints at once
        assert pod.proc.alive() and httpx.get(f"http://127.0.0.1:{port}/").status_code == 200  # still serving
        now[0] = 4.5  # 3.5 s into its 4 s sleep
        kubelet.sync()
        assert pod in kubelet.pods and pod.proc.alive()
        now[0] = 5.0
        kubelet.sync()
        assert kubelet.pods == [] and not pod.proc.alive()
    finally:
        kubelet.stop()
        sup.stop_all()
