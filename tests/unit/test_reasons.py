"""Why a zone has not applied a step: one line from what the tick saw."""

from __future__ import annotations

from federation.hub.reasons import reasons, zone_reason
from federation.runtimes.flux import KubeZoneStatus
from federation.runtimes.vm import HostStatus, ZoneStatus


def test_each_kind_of_reason():
    down = ZoneStatus("vms", [HostStatus("fed-agent@10.0.0.5:22", False,
                                         error="fed-agent@10.0.0.5:22: cannot connect: Connection refused")])
    assert zone_reason("vms", 3, None, down) == "unreachable: fed-agent@10.0.0.5:22: cannot connect: Connection refused"
    broken = ZoneStatus("vms", [HostStatus("h1", True, 2, error="instance frontend/v2: fed-demo-app not found")])
    assert zone_reason("vms", 3, 2, broken) == "h1: agent: instance frontend/v2: fed-demo-app not found"
    behind = ZoneStatus("vms", [HostStatus("h1", True, 3, health="ok"), HostStatus("h2", True, 2, health="ok")])
    assert zone_reason("vms", 3, 2, behind) == "h2 at step 2 (health ok)"
    flux = KubeZoneStatus("eks", None, {}, "Flux: BuildFailed: kustomize build failed")
    assert zone_reason("eks", 3, None, flux) == "Flux: BuildFailed: kustomize build failed"
    assert zone_reason("eks", 3, None, KubeZoneStatus("eks", 2, {})) == "Flux has not applied step 3 yet"
    missing = "zone onprem: frontend.yaml does not define version(s) v9 under spec.versions"
    assert zone_reason("onprem", 3, 2, None, missing) == f"step 3 not applied: {missing}"
    assert zone_reason("eks", 3, 2, None) == "not observed this tick (the zone could not be asked)"
    assert zone_reason("eks", 3, 3, flux) == ""


def test_only_zones_behind_carry_a_reason():
    ok = ZoneStatus("vms", [HostStatus("h1", True, 4)])
    got = reasons(4, {"vms": 4, "eks": None, "mesh": 3}, {"vms": ok, "eks": KubeZoneStatus("eks", None, {})})
    assert got == {"eks": "Flux has not applied step 4 yet", "mesh": "the mesh route is not at step 4 yet"}
