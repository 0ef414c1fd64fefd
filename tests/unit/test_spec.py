"""Spec models against Flagger's real Canary CRD: its analysis block is accepted unchanged."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from federation import specfiles
from federation.core import spec as specs
from federation.core.errors import SpecError

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "tests" / "data" / "schemas"

FLAGGER_CANARY = """
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  service:
    port: 9898
  analysis:
    interval: 30s
    threshold: 5
    maxWeight: 50
    stepWeight: 5
    stepWeightPromotion: 10
    mirror: false
    primaryReadyThreshold: 100
    canaryReadyThreshold: 90
    sessionAffinity:
      cookieName: flagger-cookie
      maxAge: 21600
      sameSite: Lax
    metrics:
      - name: request-success-rate
        thresholdRange:
          min: 99
        interval: 1m
      - name: request-duration
        threshold: 500
        interval: 30s
      - name: "404s percentage"
        templateRef:
          name: not-found-percentage
          namespace: istio-system
        templateVariables:
          direction: inbound
        thresholdRange:
          max: 5
        interval: 1m
    alerts:
      - name: "on-call"
        severity: error
        providerRef:
          name: on-call-msteams
          namespace: flagger
    webhooks:
      - name: "gate"
        type: confirm-rollout
        url: http://flagger-loadtester.test/gate/approve
      - name: acceptance-test
        type: pre-rollout
        url: http://flagger-loadtester.test/
        timeout: 30s
        retries: 3
        disableTLS: true
        muteAlert: false
        metadata:
          type: bash
          cmd: "curl -sd 'test' http://podinfo-canary:9898/token | grep token"
      - name: load-test
        url: http://flagger-loadtester.test/
        timeout: 5s
        metadata:
          cmd: "hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/"
      - name: traffic
        type: confirm-traffic-increase
        url: http://flagger-loadtester.test/gate/check
      - name: promotion
        type: confirm-promotion
        url: http://flagger-loadtester.test/gate/check
      - name: rollback
        type: rollback
        url: http://flagger-loadtester.test/rollback/check
      - name: notify
        type: post-rollout
        url: http://notify.test/
      - name: events
        type: event
        url: http://events.test/
"""


def flagger_analysis_schema() -> dict:
    docs = list(yaml.safe_load_all((SCHEMAS / "flagger" / "crd.yaml").read_text()))
    canary_crd = next(d for d in docs if d["spec"]["names"]["kind"] == "Canary")
    version = next(v for v in canary_crd["spec"]["versions"] if v["name"] == "v1beta1")
    return version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["analysis"]


def test_every_flagger_analysis_field_is_a_field_of_ours():
    schema = flagger_analysis_schema()

    def check(props: dict, model: type, path: str) -> None:
        ours = {f.alias or n: f for n, f in model.model_fields.items()}
        for name, sub in props.items():
            assert name in ours, f"{path}.{name} from Flagger's CRD is missing in {model.__name__}"
            nested = sub.get("items", sub).get("properties")
            target = specfiles._strip_optional(ours[name].annotation)
            import typing

            args = typing.get_args(target)
            target = specfiles._strip_optional(args[0]) if args and not isinstance(target, type) else target
            if nested and specfiles._is_model(target):
                check(nested, target, f"{path}.{name}")

    check(schema["properties"], specs.Analysis, "analysis")


def test_flagger_canary_analysis_accepted_unchanged(tmp_path: Path):
    f = tmp_path / "podinfo.yaml"
    f.write_text(FLAGGER_CANARY)
    (analysis,) = specfiles.load(f)
    assert isinstance(analysis, specs.Analysis)
    assert analysis.step_weight == 5 and analysis.max_weight == 50
    assert analysis.metrics[1].bounds == (None, 500)  # deprecated threshold: a max for duration
    assert [h.type.value for h in analysis.webhooks] == [
        "confirm-rollout", "pre-rollout", "rollout", "confirm-traffic-increase", "confirm-promotion",
        "rollback", "post-rollout", "event"]
    # The same block inside a FederatedCanary
    doc = yaml.safe_load(FLAGGER_CANARY)
    fc = {"apiVersion": specs.API_VERSION, "kind": "FederatedCanary", "metadata": {"name": "podinfo"},
          "spec": {"service": {"name": "podinfo", "port": 9898},
                   "primary": {"version": "v1", "zones": ["a"]}, "canary": {"version": "v2", "zones": ["b"]},
                   "analysis": doc["spec"]["analysis"]}}
    specs.FederatedCanary.model_validate(fc)


def test_template_variables_of_a_template_ref_are_checked_against_the_metric():
    doc = yaml.safe_load(FLAGGER_CANARY)
    fc = specs.FederatedCanary.model_validate(
        {"apiVersion": specs.API_VERSION, "kind": "FederatedCanary", "metadata": {"name": "podinfo"},
         "spec": {"service": {"name": "podinfo"}, "primary": {"version": "v1", "zones": ["a"]},
                  "canary": {"version": "v2", "zones": ["b"]}, "analysis": doc["spec"]["analysis"]}})
    ok = 'x{d="{{ variables.direction }}",ns="{{ namespace }}"}'
    assert specs.check_templates(fc, {"not-found-percentage": ok}) == []
    assert specs.check_templates(fc, {}) == []  # not found: said by the analysis, as no data
    bad = 'x{d="{{ variables.direction }}",r="{{ variables.reporter }}"}'
    assert specs.check_templates(fc, {"not-found-percentage": bad}) == [(
        "spec.analysis.metrics[2].templateVariables",
        "metric '404s percentage': the query uses {{ variables.reporter }} but templateVariables has no "
        "'reporter' (has: direction) (MetricTemplate 'not-found-percentage')")]


def test_our_example_analysis_minus_our_additions_validates_against_flagger_crd():
    doc = yaml.safe_load((ROOT / "clusters/canaries/frontend.yaml").read_text())
    analysis = doc["spec"]["analysis"]
    for m in analysis.get("metrics", []):
        for ours in ("scope", "noData", "compare", "minRequests"):
            m.pop(ours, None)
    jsonschema.validate(analysis, flagger_analysis_schema())


def test_example_fleet_and_canary_load():
    fleet = specfiles.load_one(ROOT / "clusters/fleet.yaml", specs.Fleet)
    assert fleet.zone_names == ["eks", "onprem", "vms"]
    c = specfiles.load_canary(ROOT / "clusters/canaries/frontend.yaml", fleet)
    assert c.key == "shop/frontend"


def test_flagger_canary_without_analysis(tmp_path: Path):
    f = tmp_path / "c.yaml"
    f.write_text("apiVersion: flagger.app/v1beta1\nkind: Canary\nmetadata: {name: x}\nspec: {}\n")
    with pytest.raises(SpecError, match=r"spec\.analysis: required field is missing"):
        specfiles.load(f)


def test_round_trip_edit_keeps_comments_and_order():
    text = (ROOT / "clusters/vms/frontend.yaml").read_text()
    out = specfiles.edit(text, {("spec", "serving", "v1"): 2500})
    assert out.replace("v1: 2500", "v1: 10000") == text
