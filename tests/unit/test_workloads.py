"""Workloads of a Kubernetes zone rendered from its ZoneRelease (``runtimes.workloads``): every
object valid against the Kubernetes OpenAPI schema (kubernetes-validate, strict) or its CRD, the
same definition giving the same Deployment at every step, and bad definitions one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from federation.core import spec as specs
from federation.core.errors import PermanentError
from federation.core.state import Stage
from federation.core.steps import RolloutTarget, StepRecord
from federation.core.weights import Subset
from federation.runtimes import workloads
from tests.schemas import validate_kubernetes

ROOT = Path(__file__).resolve().parents[2]
EKS = yaml.safe_load((ROOT / "clusters" / "eks" / "frontend.yaml").read_text())["spec"]


def record(step: int, weights: dict[str, int], retire: tuple[str, ...] = ()) -> StepRecord:
    return StepRecord("shop/frontend", step, Stage.ANALYSIS, 2000,
                      tuple(sorted((Subset("eks", v), w) for v, w in weights.items())),
                      RolloutTarget("v1", ("eks",), "v2", ("eks",)), retire=tuple(Subset("eks", v) for v in retire))


def target(route: specs.ZoneRouteKind = specs.ZoneRouteKind.NONE) -> workloads.Target:
    return workloads.Target("eks", "frontend", "shop", 8080, route)


@pytest.mark.parametrize("route", list(specs.ZoneRouteKind))
def test_every_rendered_object_is_valid(route):
    files = workloads.render(target(route), "frontend.yaml", EKS["versions"], {"v1": 8000, "v2": 2000},
                             record(3, {"v1": 8000, "v2": 2000}))
    expected = {"frontend.yaml", "frontend-v1.yaml", "frontend-v2.yaml", "kustomization.yaml"}
    if route is not specs.ZoneRouteKind.NONE:
        expected.add("frontend-route.yaml")
    assert set(files) == expected
    assert files["kustomization.yaml"][0]["resources"] == sorted(expected - {"kustomization.yaml"})
    kinds = []
    for docs in files.values():
        for d in docs:
            if d["kind"] != "Kustomization":
                validate_kubernetes(d)
            kinds.append(d["kind"])
    assert kinds.count("Deployment") == 2


def test_a_version_s_deployment_and_service():
    dep, svc = workloads.render_version(target(), "v2", workloads.workload("eks", "frontend.yaml", "v2",
                                                                             EKS["versions"]["v2"]))
    assert dep["metadata"]["name"] == svc["metadata"]["name"] == "frontend-v2"
    assert dep["metadata"]["namespace"] == "shop"
    labels = {"app": "frontend", "version": "v2"}
    assert dep["spec"]["selector"]["matchLabels"] == labels == dep["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"] == labels
    assert dep["spec"]["replicas"] == 2
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "registry.example.com/shop/frontend:2.0.0"
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["livenessProbe"]["periodSeconds"] == 10
    assert c["resources"] == {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}
    assert "command" not in c  # the VM stand-in's command is not the container's
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
    env = {**EKS["versions"]["v2"], "env": {"FAULT_RATE": "0.3", "EXTRA_LATENCY_MS": 150}}
    v3 = workloads.render_version(target(), "v3", workloads.workload("eks", "f", "v3", env))[0]
    env = v3["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "EXTRA_LATENCY_MS", "value": "150"}, {"name": "FAULT_RATE", "value": "0.3"}]


TEMPLATE = yaml.safe_load((ROOT / "clusters" / "eks" / "workloads" / "frontend-v3.yaml").read_text())


def test_a_version_from_the_team_s_deployment_template():
    """v3 names the team's Deployment file: the hub keeps the team's pod spec, strategy, replicas
    and labels, and puts its own name, namespace, labels and selector on it."""
    w = workloads.workload("eks", "frontend.yaml", "v3", EKS["versions"]["v3"])
    assert w.template == "workloads/frontend-v3.yaml" and w.image is None
    dep, svc = workloads.render_version(target(), "v3", w, {**TEMPLATE, "metadata": {"name": "anything",
                                                                                     "labels": {"team": "shop",
                                                                                                "version": "x"}}})
    validate_kubernetes(dep)
    validate_kubernetes(svc)
    assert dep["metadata"]["name"] == svc["metadata"]["name"] == "frontend-v3"
    assert dep["metadata"]["namespace"] == "shop"
    labels = {"app": "frontend", "version": "v3"}
    assert dep["metadata"]["labels"] == {**labels, "team": "shop", "app.kubernetes.io/managed-by": "federation"}
    assert dep["spec"]["selector"] == {"matchLabels": labels}
    assert dep["spec"]["template"]["metadata"]["labels"] == labels
    assert dep["spec"]["template"]["spec"] == TEMPLATE["spec"]["template"]["spec"]  # the team's pod, untouched
    assert dep["spec"]["replicas"] == 2 and dep["spec"]["strategy"] == TEMPLATE["spec"]["strategy"]
    assert workloads.image_of(w, TEMPLATE) == "registry.example.com/shop/frontend:3.0.0"
    assert svc["spec"]["selector"] == labels and svc["spec"]["ports"][0]["targetPort"] == "http"
    # The rendering is the same at every step; a new image in the template is a new Deployment.
    assert workloads.render_version(target(), "v3", w, TEMPLATE) == workloads.render_version(target(), "v3", w,
                                                                                             TEMPLATE)
    bumped = yaml.safe_load(yaml.safe_dump(TEMPLATE).replace("frontend:3.0.0", "frontend:3.0.1"))
    assert workloads.render_version(target(), "v3", w, bumped)[0]["spec"]["template"]["spec"]["containers"][0][
        "image"] == "registry.example.com/shop/frontend:3.0.1"


@pytest.mark.parametrize(("definition", "line"), [
    ({"template": "w.yaml", "image": "x:1"},
     "zone eks: frontend.yaml: spec.versions.v3.image: set in the Deployment template (w.yaml), not beside it"),
    ({"template": "w.yaml", "probes": {"readiness": {}}},
     "zone eks: frontend.yaml: spec.versions.v3.probes: set in the Deployment template (w.yaml), not beside it"),
    ({"replicas": 2}, "zone eks: frontend.yaml: spec.versions.v3.image: required in a kubernetes zone (or a "
                      "Deployment template: spec.versions.v3.template)"),
])
def test_a_template_and_pod_fields_beside_it_are_refused(definition, line):
    with pytest.raises(PermanentError) as err:
        workloads.workload("eks", "frontend.yaml", "v3", definition)
    assert str(err.value) == line


def test_the_deployment_does_not_change_with_the_weights():
    a = workloads.render(target(specs.ZoneRouteKind.HTTPROUTE), "f", EKS["versions"], {"v1": 8000, "v2": 2000},
                         record(3, {"v1": 8000, "v2": 2000}))
    b = workloads.render(target(specs.ZoneRouteKind.HTTPROUTE), "f", EKS["versions"], {"v1": 6000, "v2": 4000},
                         record(4, {"v1": 6000, "v2": 4000}))
    assert a["frontend-v1.yaml"] == b["frontend-v1.yaml"] and a["frontend-v2.yaml"] == b["frontend-v2.yaml"]
    assert a["frontend-route.yaml"] != b["frontend-route.yaml"]


def test_local_routes_split_by_the_zone_s_weights():
    t = target(specs.ZoneRouteKind.HTTPROUTE)
    (http,) = workloads.render_route(t, {"v1": 7500, "v2": 2500}, record(3, {"v1": 7500, "v2": 2500}))
    assert http["metadata"]["name"] == "frontend-eks"
    assert http["spec"]["parentRefs"] == [{"group": "core", "kind": "Service", "name": "frontend", "port": 8080}]
    assert [(b["name"], b["weight"]) for b in http["spec"]["rules"][-1]["backendRefs"]] == \
        [("frontend-v1", 7500), ("frontend-v2", 2500)]
    ts = workloads.render_route(target(specs.ZoneRouteKind.TRAFFICSPLIT), {"v1": 0, "v2": 0},
                                record(1, {"v1": 0, "v2": 0}))[0]
    # A zone that gets no traffic yet splits evenly over what runs there (never all-zero).
    assert ts["spec"]["backends"] == [{"service": "frontend-v1", "weight": 1}, {"service": "frontend-v2", "weight": 1}]
    assert workloads.render_route(target(), {"v1": 1}, record(1, {"v1": 1})) == []


@pytest.mark.parametrize(("definition", "line"), [
    ({"command": ["app"], "replicas": 1}, "zone eks: frontend.yaml: spec.versions.v2.image: required in a kubernetes zone"),
    ({"image": "x:1", "replicas": -1}, "zone eks: frontend.yaml: spec.versions.v2.replicas: Input should be greater"),
    ({"image": "x:1", "ports": [{"name": "http"}]},
     "zone eks: frontend.yaml: spec.versions.v2.ports[0].containerPort: required in a kubernetes zone"),
    ({"image": "x:1", "probes": {"readyness": {}}}, "zone eks: frontend.yaml: spec.versions.v2.probes.readyness: "
                                                     "unknown field (did you mean 'readiness'?)"),
    ({"image": "x:1", "replica": 3}, "zone eks: frontend.yaml: spec.versions.v2.replica: unknown field "
                                     "(did you mean 'replicas'?)"),
])
def test_a_bad_definition_is_one_line_naming_file_and_field(definition, line):
    with pytest.raises(PermanentError) as err:
        workloads.workload("eks", "frontend.yaml", "v2", definition)
    assert str(err.value).startswith(line) and "\n" not in str(err.value)


def test_flux_path_must_be_a_directory_inside_the_repo():
    assert specs.FluxRef(path="./deploy/").path == "deploy"
    for bad in ("/deploy", "../x", ".", ""):
        with pytest.raises(ValueError):
            specs.FluxRef(path=bad)


@pytest.mark.parametrize("route", list(specs.ZoneRouteKind))
def test_the_service_s_own_service_is_there_whatever_the_mesh(route):
    """Kuma's MeshHTTPRoute and Istio's VirtualService route for <service>; Linkerd's HTTPRoute
    hangs on it: it selects every version, on the versions' port."""
    versions = {"v1": {"image": "x:1", "ports": [{"name": "web", "containerPort": 9000}]}}
    files = workloads.render(target(route), "f", versions, {"v1": 10000}, record(1, {"v1": 10000}))
    (svc,) = files["frontend.yaml"]
    assert svc["metadata"]["name"] == "frontend" and svc["spec"]["selector"] == {"app": "frontend"}
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "web", "protocol": "TCP"}]
    assert workloads.render(target(route), "f", versions, {}, record(2, {}))["kustomization.yaml"][0]["resources"] == []


@pytest.mark.parametrize(("full", "before", "after", "version", "want"), [
    (4, {}, {"v1": 10000, "v2": 0}, "v2", 1),  # a canary at weight 0: one pod, ready before traffic
    (4, {}, {"v1": 10000, "v2": 0}, "v1", 4),
    (4, {"v1": 10000, "v2": 0}, {"v1": 7500, "v2": 2500}, "v2", 1),  # 25% of 4
    (4, {"v1": 10000, "v2": 0}, {"v1": 7500, "v2": 2500}, "v1", 4),  # still receives 100% until the mesh moves
    (4, {"v1": 7500, "v2": 2500}, {"v1": 5000, "v2": 5000}, "v1", 3),  # the previous step's 75%
    (4, {"v1": 5000, "v2": 5000}, {"v1": 5000, "v2": 5000}, "v1", 2),
    (4, {"v1": 0, "v2": 10000}, {"v2": 10000}, "v2", 4),
    (3, {"v1": 6667, "v2": 3333}, {"v1": 6667, "v2": 3333}, "v2", 1),  # rounded up: 0.9999 -> 1
    (2, {"v1": 0, "v2": 0}, {"v1": 0, "v2": 0}, "v1", 1),  # all at 0: an even split
    (0, {}, {"v1": 10000}, "v1", 0),  # scaled to zero by its owners stays so
])
def test_replicas_that_follow_the_weight(full, before, after, version, want):
    assert workloads.scaled_replicas(full, before, after, version) == want


def test_only_replicas_follow_the_weight_and_only_when_asked():
    t = workloads.Target("eks", "frontend", "shop", 8080, follow_weight=True)
    files = workloads.render(t, "f", EKS["versions"], {"v1": 7500, "v2": 2500}, record(2, {"v1": 7500, "v2": 2500}),
                             before={"v1": 10000, "v2": 0})
    fixed = workloads.render(target(), "f", EKS["versions"], {"v1": 7500, "v2": 2500}, record(2, {"v1": 7500, "v2": 2500}))
    assert [files[f"frontend-{v}.yaml"][0]["spec"]["replicas"] for v in ("v1", "v2")] == [2, 1]
    assert [fixed[f"frontend-{v}.yaml"][0]["spec"]["replicas"] for v in ("v1", "v2")] == [2, 2]
    # The pod template is the same: scaling never restarts a pod.
    assert files["frontend-v2.yaml"][0]["spec"]["template"] == fixed["frontend-v2.yaml"][0]["spec"]["template"]
    assert specs.FluxRef().replicas == "fixed" and specs.FluxRef(replicas="weight").replicas == "weight"
