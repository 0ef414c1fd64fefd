"""Opt-in: the Kubernetes checks against a real cluster with Flux (``make e2e-k8s``).

Set FEDERATION_E2E_KUBECONFIG (and optionally FEDERATION_E2E_CONTEXT, FEDERATION_E2E_KUSTOMIZATION
as namespace/name) to a cluster where Flux runs; without it every test here is skipped with that
message. The hub needs the rights in clusters/hub/member/member-cluster.yaml.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

from federation.core.spec import Kubeconfig
from federation.runtimes import kubernetes as kube
from federation.runtimes.leases import Lease

pytestmark = pytest.mark.k8s
KUBECONFIG = os.environ.get("FEDERATION_E2E_KUBECONFIG")
SKIP = "no real cluster configured: set FEDERATION_E2E_KUBECONFIG (a cluster with Flux) to run the opt-in suite"


@pytest.fixture
def api():
    if not KUBECONFIG:
        pytest.skip(SKIP)
    return kube.Api(kube.api_client(Kubeconfig(path=KUBECONFIG, context=os.environ.get("FEDERATION_E2E_CONTEXT"))))


def test_flux_status_and_reconcile_request(api):
    ns, _, name = os.environ.get("FEDERATION_E2E_KUSTOMIZATION", "flux-system/flux-system").partition("/")
    z = kube.FluxZone(api, ns, name, name)
    st = asyncio.run(z.status())
    assert st.revision and (st.ready or st.reason)
    stamp = asyncio.run(z.request_reconcile())
    g, v, p = kube.FLUX_KS
    obj = api.custom.get_namespaced_custom_object(g, v, ns, p, name)
    assert obj["metadata"]["annotations"][kube.RECONCILE] == stamp


def test_lease_election_on_a_real_api_server(api):
    name = f"federation-e2e-{uuid.uuid4().hex[:8]}"
    a = Lease(api, "default", name, "a", duration=5)
    b = Lease(api, "default", name, "b", duration=5)
    try:
        assert asyncio.run(a.try_acquire()) and not asyncio.run(b.try_acquire())
        asyncio.run(a.release())
        assert asyncio.run(b.try_acquire())
    finally:
        api.coordination.delete_namespaced_lease(name, "default")
