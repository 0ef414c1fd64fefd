"""Opt-in (``make e2e-k8s``): the workload path of a Kubernetes zone on a real cluster — the hub
renders a version's Deployment and Service (one inline, one from the team's Deployment template)
and the kustomization listing them into a zone repo, the cluster's Flux applies them, the hub reads
Flux's applied revision and the Deployments' readiness back, and a retired version's Deployment is
pruned by Flux after the step that retires it.

Configure (all required but the last three):

- FEDERATION_E2E_KUBECONFIG (and FEDERATION_E2E_CONTEXT): the hub's identity on the cluster, with
  the rights of clusters/hub/member/member-cluster.yaml;
- FEDERATION_E2E_ZONE_GIT: a zone repo the test may push to (FEDERATION_E2E_ZONE_BRANCH, default
  main; credentials as git finds them), applied by the Flux Kustomization
  FEDERATION_E2E_ZONE_KUSTOMIZATION (namespace/name, default flux-system/federation-e2e) with
  ``path: ./deploy`` and ``prune: true``, as clusters/flux/zone-eks.yaml;
- FEDERATION_E2E_NAMESPACE: where the Deployments run (default shop);
- FEDERATION_E2E_IMAGE, FEDERATION_E2E_ARGS: an image the cluster can pull that answers HTTP on
  8080 (default agnhost netexec).

Without them every test here is skipped with that message. FEDERATION_E2E_LOCAL=1 runs the same
test on this machine instead: a local kube-apiserver (``scripts/build-kube``'s binaries, never built
here) with the demo's local stand-ins for Flux and the kubelet (``demo.fluxlocal``,
``demo.kubelet``) — a check of this suite, not of a cluster.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from federation.core import spec as specs
from federation.core.state import Stage
from federation.core.steps import RolloutTarget, StepRecord
from federation.core.weights import Subset
from federation.gitops import repo as gitrepo
from federation.gitops.aio import AsyncRepo
from federation.runtimes import flux as kubeflux
from federation.runtimes import kubernetes as kube

pytestmark = pytest.mark.k8s
ROOT = Path(__file__).resolve().parents[2]
SERVICE = "federation-e2e"
SKIP = ("no real cluster configured for the workload path: set FEDERATION_E2E_KUBECONFIG and FEDERATION_E2E_ZONE_GIT "
        "(a zone repo the cluster's Flux applies, see tests/k8s_real/test_workload_path.py), or "
        "FEDERATION_E2E_LOCAL=1 to run it on a local kube-apiserver with stand-ins")
IMAGE = os.environ.get("FEDERATION_E2E_IMAGE", "registry.k8s.io/e2e-test-images/agnhost:2.53")
ARGS = shlex.split(os.environ.get("FEDERATION_E2E_ARGS", "netexec --http-port=8080"))


@dataclass
class ZoneUnderTest:
    """A zone repo, the Flux Kustomization applying it, and the hub's identity on the cluster."""

    kubeconfig: specs.Kubeconfig
    git_url: str
    branch: str
    flux_namespace: str
    kustomization: str
    namespace: str
    timeout: float  # seconds a step may take to be applied and ready


def _local(tmp: Path) -> Iterator[ZoneUnderTest]:
    from federation.demo import kubeapi, kubezones
    from federation.demo.fluxlocal import LocalFlux
    from federation.demo.kubelet import LocalKubelet
    from federation.demo.procs import Supervisor

    bins = kubezones.binaries()
    if bins is None:
        pytest.skip("FEDERATION_E2E_LOCAL=1 but kube-apiserver and etcd are not built (scripts/build-kube)")
    sup = Supervisor(tmp / "logs")
    server = kubeapi.start(bins, tmp / "kube", sup)
    pods = Supervisor(tmp / "pods")
    kubelet: LocalKubelet | None = None
    halt = threading.Event()
    loop: threading.Thread | None = None
    try:
        for ns in ("flux-system", "shop"):
            server.ensure_namespace(ns)
        for f in ("member/member-cluster.yaml", "zone-flux.yaml"):
            server.apply_file(ROOT / "clusters" / "hub" / f)
        docs = [d for d in yaml.safe_load_all((ROOT / "clusters" / "flux" / "zone-eks.yaml").read_text()) if d]
        for d in docs:
            d["metadata"]["name"] = "federation-e2e"
            if d["kind"] == "Kustomization":
                d["spec"]["sourceRef"]["name"] = "federation-e2e"
        server.apply(docs)
        bare, seed = tmp / "zone.git", tmp / "seed"
        (seed / "deploy").mkdir(parents=True)
        (seed / "deploy" / "kustomization.yaml").write_text(
            (ROOT / "clusters" / "eks" / "deploy" / "kustomization.yaml").read_text())
        gitrepo.init_bare_seeded(bare, seed, message="the team's deploy/ folder")
        flux = LocalFlux(server, gitrepo.Repo(str(bare), "main", tmp / "flux"), "federation-e2e")
        kubelet = LocalKubelet(server, "shop", "local", pods, str(Path(sys.executable).parent / "fed-demo-app"))

        def controllers() -> None:
            assert kubelet is not None
            while not halt.wait(0.3):
                try:
                    flux.reconcile()
                    kubelet.sync()
                except Exception as exc:  # a controller retries at its next pass
                    print(f"local controllers: {exc}", file=sys.stderr)

        loop = threading.Thread(target=controllers, name="local-controllers", daemon=True)
        loop.start()
        kc = server.token_kubeconfig("flux-system", "federation-hub", tmp / "hub.kubeconfig", "member")
        yield ZoneUnderTest(specs.Kubeconfig(path=str(kc), context="member"), str(bare), "main", "flux-system",
                            "federation-e2e", "shop", 60.0)
    finally:
        halt.set()
        if loop is not None:
            loop.join(30)
        if kubelet is not None:
            kubelet.stop()
        pods.stop_all()
        server.stop()
        sup.stop_all()


@pytest.fixture
def zone(tmp_path: Path) -> Iterator[ZoneUnderTest]:
    kc, git_url = os.environ.get("FEDERATION_E2E_KUBECONFIG"), os.environ.get("FEDERATION_E2E_ZONE_GIT")
    if kc and git_url:
        ns, _, name = os.environ.get("FEDERATION_E2E_ZONE_KUSTOMIZATION", "flux-system/federation-e2e").partition("/")
        yield ZoneUnderTest(specs.Kubeconfig(path=kc, context=os.environ.get("FEDERATION_E2E_CONTEXT")), git_url,
                            os.environ.get("FEDERATION_E2E_ZONE_BRANCH", "main"), ns, name,
                            os.environ.get("FEDERATION_E2E_NAMESPACE", "shop"), 600.0)
    elif os.environ.get("FEDERATION_E2E_LOCAL") == "1":
        yield from _local(tmp_path)
    else:
        pytest.skip(SKIP)


def zone_release(run: str) -> str:
    """v1 described inline, v2 by the team's Deployment template (workloads/<service>-v2.yaml)."""
    return yaml.safe_dump({"apiVersion": specs.API_VERSION, "kind": "ZoneRelease", "metadata": {"name": SERVICE},
                           "spec": {"service": SERVICE, "versions": {
                               "v1": {"image": IMAGE, "args": ARGS, "replicas": 1,
                                      "ports": [{"name": "http", "containerPort": 8080}], "env": {"RUN": run}},
                               "v2": {"template": f"workloads/{SERVICE}-v2.yaml"}}, "serving": {}}}, sort_keys=False)


def template(run: str) -> str:
    return yaml.safe_dump({"apiVersion": "apps/v1", "kind": "Deployment",
                           "metadata": {"name": f"{SERVICE}-v2", "labels": {"team": "e2e"}},
                           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": SERVICE}},
                                    "template": {"metadata": {"labels": {"app": SERVICE}}, "spec": {"containers": [
                                        {"name": "app", "image": IMAGE, "args": ARGS,
                                         "env": [{"name": "RUN", "value": run}],
                                         "ports": [{"name": "http", "containerPort": 8080}]}]}}}}, sort_keys=False)


def wait(what: str, check: Callable[[], Any], timeout: float) -> Any:
    """Poll ``check`` until it returns something truthy, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(1.0)
    pytest.fail(f"{what}: not within {timeout:g}s (last: {last!r})")


def test_workload_path_through_git_and_flux(zone: ZoneUnderTest, tmp_path: Path):
    run = uuid.uuid4().hex[:8]
    human = gitrepo.Repo(zone.git_url, zone.branch, tmp_path / "human")
    human.ensure()
    before = human.read("deploy/kustomization.yaml")

    def seed(repo: gitrepo.Repo) -> list[str]:
        repo.write(f"{SERVICE}.yaml", zone_release(run))
        repo.write(f"workloads/{SERVICE}-v2.yaml", template(run))
        return [f"{SERVICE}.yaml", f"workloads/{SERVICE}-v2.yaml"]

    assert human.commit_and_push(seed, f"{SERVICE}: e2e run {run}", author="e2e <e2e@localhost>")
    z = specs.Zone.model_validate({
        "name": "e2e", "kind": "kubernetes", "git": {"url": zone.git_url, "branch": zone.branch, "path": "."},
        "prometheus": {"url": "http://127.0.0.1:1"}, "ingress": {"address": "127.0.0.1", "port": 1},
        "kubeconfig": zone.kubeconfig.model_dump(by_alias=True, exclude_none=True),
        "flux": {"namespace": zone.flux_namespace, "kustomization": zone.kustomization, "workloadNamespace": zone.namespace,
                 "localRoute": "none"}})
    canary = specs.FederatedCanary.model_validate({
        "apiVersion": specs.API_VERSION, "kind": "FederatedCanary", "metadata": {"name": SERVICE, "namespace": zone.namespace},
        "spec": {"service": {"name": SERVICE, "port": 8080}, "primary": {"version": "v1", "zones": ["e2e"]},
                 "canary": {"version": "v2", "zones": ["e2e"]},
                 "analysis": {"stepWeight": 50, "maxWeight": 50, "metrics": []}}})
    target = RolloutTarget("v1", ("e2e",), "v2", ("e2e",))
    repo = AsyncRepo.of(z.git, tmp_path / "hub")
    kz = kubeflux.KubeZone.of(z, repo)
    reader = kube.Api(kube.api_client(zone.kubeconfig))

    def step(n: int, weights: dict[str, int], retire: tuple[str, ...] = (), stage: Stage = Stage.ANALYSIS) -> str:
        rec = StepRecord(canary.key, n, stage, weights.get("v2", 0),
                         tuple(sorted((Subset("e2e", v), w) for v, w in weights.items())), target,
                         retire=tuple(Subset("e2e", v) for v in retire))

        async def go() -> str:
            await repo.ensure()
            sha = await kz.commit(canary, rec, rec.message(SERVICE, "v2"))
            assert sha is not None
            await kz.converge(n)
            return sha
        return asyncio.run(go())

    def observed(n: int) -> kubeflux.KubeZoneStatus:
        return asyncio.run(kz.observe(canary, n))

    def deployment(name: str) -> Any:
        try:
            return reader.apps.read_namespaced_deployment_status(name, zone.namespace)  # what the hub may read
        except kube.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    try:
        # Step 1: both versions run, v1 serves. Flux applies the commit; both become ready.
        sha = step(1, {"v1": 10000, "v2": 0})
        human.ensure()
        files = human.changed(sha)
        assert {f"deploy/{SERVICE}/{SERVICE}-v1.yaml", f"deploy/{SERVICE}/{SERVICE}-v2.yaml",
                f"deploy/{SERVICE}/kustomization.yaml", "deploy/kustomization.yaml"} <= set(files)
        st = wait("step 1 applied by Flux and both Deployments ready",
                  lambda: (s := observed(1)).applied_step() == 1 and s.ready_percent(SERVICE, "v1") == 100.0
                  and s.ready_percent(SERVICE, "v2") == 100.0 and s, zone.timeout)
        assert st.reasons() == []
        v2 = deployment(f"{SERVICE}-v2")
        assert v2.metadata.labels["team"] == "e2e" and v2.metadata.labels["app.kubernetes.io/managed-by"] == "federation"
        assert v2.spec.selector.match_labels == {"app": SERVICE, "version": "v2"}
        assert v2.spec.template.spec.containers[0].image == IMAGE
        # Step 2: v2 takes everything and v1 is retired: its files leave the repo, Flux prunes it.
        step(2, {"v2": 10000}, retire=("v1",), stage=Stage.FINALISING)
        wait("step 2 applied by Flux", lambda: observed(2).applied_step() == 2, zone.timeout)
        wait(f"Deployment {SERVICE}-v1 pruned by Flux", lambda: deployment(f"{SERVICE}-v1") is None, zone.timeout)
        assert observed(2).ready_percent(SERVICE, "v2") == 100.0
    finally:
        # Leave the repo as it was: the service's files out (Flux prunes what it applied).
        def clean(r: gitrepo.Repo) -> list[str]:
            out = []
            for p in [f for f in r.files(".") if f.startswith(f"deploy/{SERVICE}/")
                      or f in (f"{SERVICE}.yaml", f"workloads/{SERVICE}-v2.yaml")]:
                (r.workdir / p).unlink()
                out.append(p)
            if before is not None and r.read("deploy/kustomization.yaml") != before:
                r.write("deploy/kustomization.yaml", before)
                out.append("deploy/kustomization.yaml")
            return out

        human.commit_and_push(clean, f"{SERVICE}: e2e run {run} cleaned up", author="e2e <e2e@localhost>")
        reader.close()
