"""Notifications: payload per provider, severity routing, HMAC signature — against a real HTTP server."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

import pytest

from federation.core import spec as specs
from federation.notify import alerts
from tests.httpstub import Receiver
from tests.unit.builders import BASE_CANARY


@pytest.fixture
def sink():
    s = Receiver()
    yield s
    s.close()


def test_routing_by_severity_and_payloads(sink, monkeypatch):
    for kind in ("slack", "msteams", "discord", "generic"):
        monkeypatch.setenv(f"URL_{kind.upper()}", f"{sink.base}/{kind}")
    monkeypatch.setenv("HMAC_SECRET", "k3y")
    providers = [specs.AlertProvider(name=k, type=k, url_env=f"URL_{k.upper()}",
                                     hmac_secret_env="HMAC_SECRET" if k == "generic" else None)
                 for k in ("slack", "msteams", "discord", "generic")]
    doc = json.loads(json.dumps(BASE_CANARY))
    doc["spec"]["analysis"]["alerts"] = [
        {"name": "chat", "severity": "info", "providerRef": {"name": "slack"}},
        {"name": "teams", "severity": "warn", "providerRef": {"name": "msteams"}},
        {"name": "pager", "severity": "error", "providerRef": {"name": "discord"}},
        {"name": "audit", "severity": "info", "providerRef": {"name": "generic"}},
    ]
    canary = specs.FederatedCanary.model_validate(doc)
    sent = asyncio.run(alerts.notify(providers, canary, "Progressing", "warn", "FailedCheck", "success 97% < 99%"))
    assert sorted(sent) == ["generic", "msteams", "slack"]  # discord wants error only
    paths = {p for p, _, _ in sink.got}
    assert paths == {"/slack", "/msteams", "/generic"}
    slack = next(b for p, _, b in sink.got if p == "/slack")
    assert slack["text"] == "default/frontend: FailedCheck" and slack["attachments"][0]["text"] == "success 97% < 99%"
    teams = next(b for p, _, b in sink.got if p == "/msteams")
    assert teams["@type"] == "MessageCard"
    _path, headers, generic = next(x for x in sink.got if x[0] == "/generic")
    raw = json.dumps(generic, sort_keys=True).encode()
    want = "sha256=" + hmac.new(b"k3y", raw, hashlib.sha256).hexdigest()
    assert headers["X-Federation-Signature"] == want
    sink.got.clear()
    asyncio.run(alerts.notify(providers, canary, "Failed", "error", "Rollback", "rolled back"))
    assert {p for p, _, _ in sink.got} == {"/slack", "/msteams", "/discord", "/generic"}


def test_provider_url_must_come_from_env_or_file():
    with pytest.raises(ValueError, match="exactly one of urlEnv, urlFile"):
        specs.AlertProvider(name="x", type="slack")


def test_a_provider_url_that_is_not_http_is_refused_without_showing_it(sink, monkeypatch, caplog):
    monkeypatch.setenv("URL_SLACK", "hooks.slack.com/services/T0/SECRET")
    p = specs.AlertProvider(name="chat", type="slack", url_env="URL_SLACK")
    assert asyncio.run(alerts.send(p, {"text": "x"})) is False
    assert "alert provider chat: the URL in URL_SLACK is refused: must start with http:// or https://" in caplog.text
    assert "SECRET" not in caplog.text and sink.got == []
