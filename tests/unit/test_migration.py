"""Migrations: the same version moved to other zones (``v1@vms -> v1@eks,onprem``). Subsets are
(zone, version), so this is a rollout like any other — validate, plan, decide and the routers tell
the sides apart by zone as well as version. Only a subset on both sides is refused."""

from __future__ import annotations

import json
from pathlib import Path

from federation.core import spec as specs
from federation.core.state import Phase, SetWeights
from federation.core.steps import RolloutTarget
from federation.core.weights import Subset, subsets_for
from federation.routers import factory
from federation.routers.model import RouteRequest
from tests.cli import fedctl
from tests.unit.builders import Driver, canary, good_metrics

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = "clusters/canaries/frontend-migration.yaml"


def migration(**spec: object) -> specs.CanarySpec:
    return canary(primary={"version": "v1", "zones": ["vms"]}, canary={"version": "v1", "zones": ["eks", "onprem"]},
                  **spec)


def test_fedctl_validate_accepts_a_migration():
    r = fedctl("validate", EXAMPLE, "--fleet", "clusters/fleet.yaml")
    assert r.returncode == 0, r.stderr
    assert "1 file(s) valid" in r.stdout


def test_fedctl_validate_refuses_a_subset_on_both_sides(tmp_path: Path):
    f = tmp_path / "overlap.yaml"
    f.write_text((ROOT / EXAMPLE).read_text().replace("zones: [eks, onprem]", "zones: [vms, eks]")
                 .replace("    eks: 2\n    onprem: 1\n", "    eks: 1\n"))
    r = fedctl("validate", str(f))
    assert r.returncode == 2 and r.stdout == "" and "Traceback" not in r.stderr
    assert r.stderr.strip() == (f"{f}: spec: canary.version equals primary.version ('v1') in zone(s) vms: "
                                "a version can only move to zones it does not run in")


def test_fedctl_plan_of_a_migration_moves_v1_from_the_vms_to_the_clusters():
    r = fedctl("plan", EXAMPLE, "--fleet", "clusters/fleet.yaml", "-o", "json")
    assert r.returncode == 0, r.stderr
    steps = json.loads(r.stdout)["steps"]
    assert set(steps[0]["weights"]) == {"vms/v1", "eks/v1", "onprem/v1"}
    assert steps[0]["weights"]["vms/v1"] == 10000
    assert steps[-1]["weights"] == {"vms/v1": 0, "eks/v1": 6667, "onprem/v1": 3333}
    for s in steps:
        assert sum(s["weights"].values()) == 10000


def test_weights_keep_the_sides_apart():
    w = subsets_for(migration(), 3000)
    assert w == {Subset("vms", "v1"): 7000, Subset("eks", "v1"): 1500, Subset("onprem", "v1"): 1500}


def test_a_migration_runs_to_success_and_retires_the_vms_only():
    d = Driver(migration())
    d.initialise()
    for _ in range(60):
        d.tick(60.0)
        if d.status.phase in (Phase.SUCCEEDED, Phase.FAILED):
            break
    assert d.status.phase is Phase.SUCCEEDED
    assert str(RolloutTarget.parse(d.status.target)) == "v1@vms->v1@eks,onprem"
    sets = [a for dd in d.decisions for a in dd.actions if isinstance(a, SetWeights)]
    assert [a.canary_weight for a in sets][1:] == [0, 2000, 4000, 6000, 10000, 10000]
    final = sets[-1]
    assert final.stage == "finalising" and final.retire == (Subset("vms", "v1"),)
    assert dict(final.weights) == {Subset("eks", "v1"): 5000, Subset("onprem", "v1"): 5000, Subset("vms", "v1"): 0}


def test_a_failed_migration_retires_the_clusters_only():
    spec = migration(analysis={"threshold": 1})
    d = Driver(spec)
    d.initialise()
    d.start_canary()
    out = d.tick(60, metrics=good_metrics(spec, 90.0))
    assert d.status.phase is Phase.FAILED
    sw = [a for a in out.actions if isinstance(a, SetWeights)]
    assert set(sw[0].retire) == {Subset("eks", "v1"), Subset("onprem", "v1")}
    assert dict(sw[0].weights)[Subset("vms", "v1")] == 10000


def request(spec: specs.CanarySpec, bp: int, **kw: object) -> RouteRequest:
    return RouteRequest(service="frontend", namespace="shop", port=8080, primary_version="v1", canary_version="v1",
                        weights=tuple(sorted(subsets_for(spec, bp).items())), step=2, rollout="shop/frontend",
                        zones=("eks", "onprem", "vms"), canary_zones=tuple(spec.canary.zones), **kw)  # type: ignore[arg-type]


def test_routers_mirror_and_stick_to_the_canary_zones_only():
    spec = migration(analysis={"mirror": True, "mirrorWeight": 50, "sessionAffinity": {"cookieName": "c"}})
    req = request(spec, 2000, mirror_weight=5000, session_affinity=spec.analysis.session_affinity)
    assert [str(s) for s, _ in req.canary_subsets()] == ["eks/v1", "onprem/v1"]
    assert req.canary_zone_totals() == {"eks": 1000, "onprem": 1000}
    edge = factory.render("envoy", req)[0]["resources"][0]["virtual_hosts"][0]["routes"]
    mirrors = [m["cluster"] for m in edge[-1]["route"]["request_mirror_policies"]]
    assert len(mirrors) == 2 and not any("vms" in m for m in mirrors)
    http = factory.render("gatewayapi", req)[0]["spec"]["rules"][-1]
    cookies = {b["name"] for b in http["backendRefs"] if b.get("filters")}
    assert cookies == {"frontend-v1-eks", "frontend-v1-onprem"}
    mirrored = {f["requestMirror"]["backendRef"]["name"] for f in http["filters"]}
    assert mirrored == {"frontend-v1-eks", "frontend-v1-onprem"}
