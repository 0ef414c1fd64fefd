"""deploy/prometheus: the alert rules parse and lint clean (`promtool check rules`), fire and stay
quiet as their synthetic series say (`promtool test rules`), read only series the hub exports, and
the PrometheusRule object carries the same groups as the plain rule file."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests import promtool

DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = DIR / "federation-rules.yaml"


def test_rules_check_and_pass_their_tests():
    checked = promtool.run("check", "rules", RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 6 rules found" in checked.stdout
    tested = promtool.run("test", "rules", DIR / "federation-rules.test.yaml", cwd=DIR)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_a_broken_expectation_fails(tmp_path: Path):
    """The rule tests can fail: the stuck rollout expected one minute too early is a failure."""
    text = (DIR / "federation-rules.test.yaml").read_text().replace("eval_time: 13m", "eval_time: 11m")
    (tmp_path / "federation-rules.yaml").write_text(RULES.read_text())
    (tmp_path / "t.yaml").write_text(text)
    tested = promtool.run("test", "rules", tmp_path / "t.yaml", cwd=tmp_path)
    assert tested.returncode == 1 and "FederationRolloutStuck" in tested.stdout + tested.stderr


def test_prometheusrule_holds_the_plain_rules(tmp_path: Path):
    obj = yaml.safe_load((DIR / "prometheusrule.yaml").read_text())
    assert obj["apiVersion"] == "monitoring.coreos.com/v1" and obj["kind"] == "PrometheusRule"
    assert obj["metadata"]["name"] and obj["metadata"]["namespace"]
    assert obj["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({"groups": obj["spec"]["groups"]}))
    checked = promtool.run("check", "rules", tmp_path / "spec.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_rules_read_only_series_the_hub_exports():
    from federation.hub.metrics import HubMetrics
    exported = {m.name for m in HubMetrics().registry.collect()}
    used = set(re.findall(r"\b(federation_\w+|flagger_\w+)", RULES.read_text()))
    assert used and used <= exported, used - exported
