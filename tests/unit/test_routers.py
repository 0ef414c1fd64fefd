"""Routers: golden output, schema validation of every manifest, weight fidelity, clear refusals."""

from __future__ import annotations

import copy
import itertools
import os
from fractions import Fraction
from pathlib import Path

import pytest
import yaml

from federation import specfiles
from federation.core import spec as specs
from federation.core.weights import Subset, subsets_for
from federation.routers import envoy, factory, gatewayapi
from federation.routers.model import RouteRequest, Unsupported
from tests import schemas
from tests.unit.builders import BASE_CANARY

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
ZONE_SETS = {1: ["eks"], 2: ["eks", "onprem"], 5: ["eks", "onprem", "gke", "dc2", "edge"]}
MODES = ("canary", "ab", "mirror", "bluegreen", "affinity")


def make_spec(zones: list[str], mode: str) -> specs.CanarySpec:
    doc = copy.deepcopy(BASE_CANARY)
    doc["spec"]["canary"]["zones"] = zones
    a = doc["spec"]["analysis"]
    if mode == "ab":
        a.pop("stepWeight"), a.pop("maxWeight")
        a.update(iterations=3, match=[{"headers": {"x-canary": {"exact": "insider"}, "user-agent": {"regex": ".*Firefox.*"}},
                                       "queryParams": {"beta": {"prefix": "y"}}}])
    elif mode == "mirror":
        a.update(mirror=True, mirrorWeight=25)
    elif mode == "bluegreen":
        a.pop("stepWeight"), a.pop("maxWeight")
        a.update(iterations=2)
    elif mode == "affinity":
        a["sessionAffinity"] = {"cookieName": "canary-sticky", "maxAge": 3600}
    return specs.FederatedCanary.model_validate(doc).spec


def request(spec: specs.CanarySpec, canary_bp: int, mode: str) -> RouteRequest:
    w = subsets_for(spec, canary_bp)
    return RouteRequest(service="frontend", namespace="shop", port=8080, primary_version=spec.primary.version,
                        canary_version=spec.canary.version, weights=tuple(sorted(w.items())), step=3,
                        rollout="shop/frontend", mirror_weight=2500 if mode == "mirror" else 0,
                        matched=mode == "ab", match=tuple(spec.analysis.match or ()),
                        session_affinity=spec.analysis.session_affinity,
                        zones=tuple(dict.fromkeys(spec.primary.zones + spec.canary.zones)))


# What each router can express; the rest must be refused with a clear error.
SUPPORTS = {
    "kuma": {"canary", "ab", "mirror", "bluegreen"},
    "kuma-trafficroute": {"canary", "bluegreen"},  # its A/B matches headers only (see below)
    "gatewayapi": set(MODES),
    "linkerd": {"canary", "ab", "bluegreen", "affinity"},
    "smi": {"canary", "bluegreen"},
    "smi-v1alpha1": {"canary", "bluegreen"},
    "istio": set(MODES),
    "envoy": set(MODES),
}
K8S_ROUTERS = [r for r in factory.ROUTERS if r != "envoy"]


@pytest.mark.parametrize(("router", "mode", "nzones"),
                         list(itertools.product(K8S_ROUTERS, MODES, ZONE_SETS)))
def test_every_manifest_validates_against_its_crd(router, mode, nzones):
    spec = make_spec(ZONE_SETS[nzones], mode)
    weight = 10_000 if mode == "bluegreen" else 2000
    req = request(spec, weight, mode)
    if mode not in SUPPORTS[router]:
        with pytest.raises(Unsupported, match=f"router {router.split('-')[0]}"):
            factory.render(router, req)
        return
    docs = factory.render(router, req)
    assert docs
    for doc in docs:
        crd = "gateway-api/gateway.networking.k8s.io_httproutes.v1.2.1.yaml" if router == "linkerd" else None
        schemas.validate(doc, crd)
        if router == "kuma":
            # The form must also be accepted by Kuma's next major release (master CRD).
            schemas.validate(doc, "kuma/kuma.io_meshhttproutes.master-3.0-unreleased.yaml")


def test_linkerd_flavour_refuses_partial_mirror_that_v1_2_1_cannot_express():
    spec = make_spec(["eks"], "mirror")
    with pytest.raises(Unsupported, match=r"v1\.2\.1"):
        factory.render("linkerd", request(spec, 0, "mirror"))
    full = request(spec, 0, "canary")
    full = RouteRequest(**{**full.__dict__, "mirror_weight": 10_000})
    for doc in factory.render("linkerd", full):
        schemas.validate(doc, "gateway-api/gateway.networking.k8s.io_httproutes.v1.2.1.yaml")


def weights_in(router: str, doc: dict) -> dict[str, int]:
    """backend -> weight from the default (last) weighted rule of each format."""
    if router == "kuma":
        refs = doc["spec"]["to"][0]["rules"][-1]["default"]["backendRefs"]
        return {f"{r['labels']['kuma.io/zone']}/{r['labels']['kuma.io/display-name']}": r["weight"] for r in refs}
    if router in ("gatewayapi", "linkerd"):
        return {r["name"]: r["weight"] for r in doc["spec"]["rules"][-1]["backendRefs"]}
    if router.startswith("smi"):
        return {b["service"]: int(b["weight"]) for b in doc["spec"]["backends"]}
    if router == "istio":
        return {r["destination"]["subset"]: r["weight"] for r in doc["spec"]["http"][-1]["route"]}
    if router == "kuma-trafficroute":
        return {f"{s['destination']['kuma.io/zone']}/{s['destination']['kuma.io/service']}": s["weight"]
                for s in doc["spec"]["conf"]["split"]}
    raise AssertionError(router)


@pytest.mark.parametrize("router", K8S_ROUTERS)
@pytest.mark.parametrize("canary_bp", [1, 500, 667, 3333, 9999])
def test_ratios_survive_every_format(router, canary_bp):
    spec = make_spec(ZONE_SETS[5], "canary")
    req = request(spec, canary_bp, "canary")
    got = weights_in(router, factory.render(router, req)[0])
    want = [w for _, w in req.weights]
    assert sorted(got.values()) == sorted(want)  # integers preserved exactly, so every ratio is exact
    total = sum(got.values())
    canary_share = Fraction(sum(w for s, w in req.weights if s.version == "v2"), total)
    assert canary_share == Fraction(canary_bp, 10_000)


def test_envoy_leaves_out_zero_weights_and_refuses_an_all_zero_route():
    spec = make_spec(ZONE_SETS[2], "canary")
    req = request(spec, 0, "canary")
    clusters = envoy.render(req)[0]["resources"][0]["virtual_hosts"][0]["routes"][-1]["route"]["weighted_clusters"]["clusters"]
    assert clusters == [{"name": "zone-vms", "weight": 10000}]
    empty = RouteRequest(**{**req.__dict__, "weights": ((Subset("vms", "v1"), 0),)})
    with pytest.raises(Exception, match="positive total"):
        envoy.render(empty)


GOLDEN_CASES = [(r, m, n) for r in factory.ROUTERS for m in MODES if m in SUPPORTS[r] for n in (1, 2, 5)]


@pytest.mark.parametrize(("router", "mode", "nzones"), GOLDEN_CASES)
def test_golden(router, mode, nzones):
    spec = make_spec(ZONE_SETS[nzones], mode)
    text = specfiles.dump(factory.render(router, request(spec, 10_000 if mode == "bluegreen" else 2000, mode)))
    path = GOLDEN / f"{router}-{mode}-{nzones}z.yaml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text(), f"{router} output changed; UPDATE_GOLDEN=1 to accept"
    assert list(yaml.safe_load_all(text))


def test_gateway_weights_are_not_percentages_and_stay_under_the_cap():
    spec = make_spec(ZONE_SETS[2], "canary")
    doc = gatewayapi.render(request(spec, 10_000, "canary"))[0]
    assert max(r["weight"] for r in doc["spec"]["rules"][-1]["backendRefs"]) <= 1_000_000


def test_trafficroute_ab_with_header_matches_validates():
    spec = make_spec(ZONE_SETS[2], "ab")
    req = request(spec, 0, "ab")
    headers_only = tuple(specs.Match(headers=m.headers) for m in req.match)
    doc = factory.render("kuma-trafficroute", RouteRequest(**{**req.__dict__, "match": headers_only}))[0]
    schemas.validate(doc)
    assert doc["spec"]["conf"]["http"][0]["match"]["headers"]["x-canary"] == {"exact": "insider"}


def first_rule_weights(router: str, doc: dict) -> list[int]:
    """Weights of the first (matched or sticky) rule of each format."""
    if router == "envoy":
        routes = doc["resources"][0]["virtual_hosts"][0]["routes"]
        return [c["weight"] for c in routes[0]["route"]["weighted_clusters"]["clusters"]]
    if router == "kuma":
        return [r["weight"] for r in doc["spec"]["to"][0]["rules"][0]["default"]["backendRefs"]]
    if router in ("gatewayapi", "linkerd"):
        return [r["weight"] for r in doc["spec"]["rules"][0]["backendRefs"]]
    if router == "istio":
        return [r["weight"] for r in doc["spec"]["http"][0]["route"]]
    raise AssertionError(router)


@pytest.mark.parametrize(("router", "mode"), [(r, m) for r in ("envoy", "kuma", "gatewayapi", "linkerd", "istio")
                                               for m in ("ab", "affinity") if m in SUPPORTS[r]])
def test_matched_and_sticky_traffic_is_shared_among_canary_zones_by_zone_weights(router, mode):
    from federation.core.weights import canary_shares

    spec = make_spec(ZONE_SETS[2], mode).model_copy(update={"zone_weights": {"eks": 3, "onprem": 1}})
    req = request(spec, 0 if mode == "ab" else 2000, mode)
    assert canary_shares(spec) == (("eks", 7500), ("onprem", 2500))
    shared = RouteRequest(**{**req.__dict__, "canary_shares": canary_shares(spec)})
    doc = factory.render(router, shared)[0]
    assert sorted(first_rule_weights(router, doc)) == [2500, 7500]
    assert sorted(first_rule_weights(router, factory.render(router, req)[0])) == [1, 1]  # unshared: equal
    if router != "envoy":
        schemas.validate(doc, "gateway-api/gateway.networking.k8s.io_httproutes.v1.2.1.yaml"
                         if router == "linkerd" else None)
