"""SSRF and secrets in URLs: a canary's webhook cannot make the hub POST to the admin port of the
fleet's own Envoys (draining the edge was shown) or to a metadata address; credentials in URLs
are refused at validation and never echoed. Real loopback receivers; the demo fleet's policy
(allow 127.0.0.0/8)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from federation import specfiles
from federation.core import outbound
from federation.core import spec as specs
from federation.core.errors import SpecError
from federation.core.spec import PrometheusSource, Webhook
from federation.demo.fleet import LocalFleet
from federation.metrics.prometheus import Client, Unreachable
from federation.notify import webhooks
from tests.cli import fedctl
from tests.httpstub import Receiver

ROOT = Path(__file__).resolve().parents[2]


def demo_fleet(tmp_path: Path, edge_admin: int) -> specs.Fleet:
    doc: dict[str, Any] = LocalFleet(tmp_path / "fleet").fleet_doc()
    doc["spec"]["mesh"]["edge"]["admin"]["port"] = edge_admin
    return specs.Fleet.model_validate(doc)


def test_a_webhook_to_the_edge_admin_is_refused_and_nothing_is_sent(tmp_path: Path):
    admin = Receiver()  # stands in for the edge Envoy's admin (POST /drain_listeners drains it)
    other = Receiver()  # an ordinary loopback webhook receiver: allowed by the demo's 127.0.0.0/8
    try:
        port = int(admin.base.rsplit(":", 1)[1])
        policy = demo_fleet(tmp_path, port).outbound_policy()
        for url in (f"{admin.base}/drain_listeners", f"http://localhost:{port}/drain_listeners",
                    f"http://[::ffff:127.0.0.1]:{port}/x", f"http://127.0.0.2:{port}/x"):
            hook = Webhook(name="evil", url=url)
            res = asyncio.run(webhooks.call(hook, {"x": 1}, policy))
            assert not res.ok and "admin endpoint of the fleet's own Envoys" in res.message, (url, res)
        assert admin.bodies == []
        ok = asyncio.run(webhooks.call(Webhook(name="fine", url=other.url), {"x": 1}, policy))
        assert ok.ok and other.bodies == [{"x": 1}]
    finally:
        admin.close()
        other.close()


@pytest.mark.parametrize("address", ["169.254.169.254", "169.254.1.1", "fe80::1", "0.0.0.0", "fd00:ec2::254"])
def test_metadata_and_link_local_addresses_are_refused_unless_allowed(address: str):
    default = outbound.Policy()
    assert "link-local or metadata" in (default.check(address, 80, [address]) or "")
    listed = outbound.Policy(("169.254.0.0/16", "fe80::/10", "0.0.0.0/32", "fd00:ec2::/64"))
    assert listed.check(address, 80, [address]) is None


def test_an_allow_list_limits_names_and_networks():
    p = outbound.Policy(("10.0.0.0/8", "*.example.com", "hooks.test"))
    assert p.check("a.example.com", 443, ["192.0.2.1"]) is None
    assert p.check("hooks.test", 443, ["192.0.2.1"]) is None
    assert p.check("x", 80, ["10.1.2.3"]) is None
    assert "not in the fleet's spec.outbound.allow" in (p.check("evil.org", 80, ["192.0.2.1"]) or "")
    # A listed name resolving to a metadata address is still refused.
    assert "metadata" in (p.check("a.example.com", 80, ["169.254.169.254"]) or "")


def test_a_canary_naming_the_metadata_address_fails_validation_against_the_fleet(tmp_path: Path):
    c = (ROOT / "clusters/canaries/frontend.yaml").read_text().replace(
        "http://flagger-loadtester.test/", "http://169.254.169.254/latest/meta-data/")
    f = tmp_path / "c.yaml"
    f.write_text(c)
    r = fedctl("validate", str(f), "--fleet", "clusters/fleet.yaml")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    line, = r.stderr.strip().splitlines()
    assert line.startswith(f"{f}: spec.analysis.webhooks[0].url: refused by the outbound policy: 169.254.169.254")


@pytest.mark.parametrize(("field", "make"), [
    ("url", lambda: Webhook(name="w", url="http://admin:s3cr3t-pw@hooks.test/")),
    ("url", lambda: PrometheusSource(url="https://user:s3cr3t-pw@prom.example.com")),
    ("url", lambda: specs.GitSource(url="https://x-access-token:s3cr3t-pw@git.example.com/r.git")),
    ("url", lambda: specs.GitSource(url="https://s3cr3t-pw@git.example.com/r.git")),
])
def test_credentials_in_urls_are_refused_without_echoing_them(field: str, make: Any):
    with pytest.raises(ValueError, match="credentials in the URL are refused") as err:
        make()
    assert "s3cr3t-pw" not in str(err.value)


def test_an_ssh_git_user_is_not_a_credential():
    assert specs.GitSource(url="ssh://git@git.example.com/r.git").url.startswith("ssh://git@")


def test_validate_never_prints_the_password(tmp_path: Path):
    fleet = (ROOT / "clusters/fleet.yaml").read_text().replace(
        "https://prometheus.eks.example.com", "https://admin:s3cr3t-pw@prometheus.eks.example.com")
    f = tmp_path / "fleet.yaml"
    f.write_text(fleet)
    with pytest.raises(SpecError) as err:
        specfiles.load(f)
    assert "credentials in the URL are refused" in str(err.value) and "s3cr3t-pw" not in str(err.value)
    assert "***@prometheus.eks.example.com" in str(err.value)


def test_a_prometheus_behind_a_refused_address_is_never_asked():
    seen = Receiver()
    try:
        port = int(seen.base.rsplit(":", 1)[1])
        policy = outbound.Policy(("127.0.0.0/8",), frozenset({("127.0.0.1", port)}))
        client = Client(PrometheusSource(url=seen.base, timeout="2s"), policy)
        with pytest.raises(Unreachable, match="refused by the outbound policy"):
            asyncio.run(client.scalar("up"))
        assert seen.got == []
    finally:
        seen.close()


def test_redact():
    assert outbound.redact("https://u:p@h.example.com:8443/x?y=1") == "https://***@h.example.com:8443/x?y=1"
    assert outbound.redact("https://h.example.com/") == "https://h.example.com/"
