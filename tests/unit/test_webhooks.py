"""Webhooks against a live receiver: Flagger's payload, 2xx gates, retries, timeouts, events."""

from __future__ import annotations

import asyncio

import pydantic
import pytest

from federation.core.spec import Webhook
from federation.notify import webhooks
from tests.httpstub import Receiver


def hook(url: str, **kw) -> Webhook:
    return Webhook.model_validate({"name": "gate", "type": "confirm-promotion", "url": url,
                                   "metadata": {"cmd": "approve"}, **kw})


def test_gate_payload_and_verdicts():
    r = Receiver([200, 403])
    try:
        ok = asyncio.run(webhooks.call_all([hook(r.url)], "frontend", "shop", "Progressing"))
        assert ok["gate"].ok
        assert r.bodies[0] == {"name": "frontend", "namespace": "shop", "phase": "Progressing",
                               "type": "confirm-promotion", "checksum": "", "metadata": {"cmd": "approve"}}
        no = asyncio.run(webhooks.call_all([hook(r.url)], "frontend", "shop", "Progressing"))
        assert not no["gate"].ok and no["gate"].message == "HTTP 403"
    finally:
        r.close()


def test_retries_then_success_and_timeout_is_a_no():
    r = Receiver([500, 502, 200])
    try:
        res = asyncio.run(webhooks.call(hook(r.url, retries=2), {"x": 1}))
        assert res.ok and len(r.bodies) == 3
    finally:
        r.close()
    slow = Receiver([], delay=2.0)
    try:
        res = asyncio.run(webhooks.call(hook(slow.url, timeout="200ms"), {"x": 1}))
        assert not res.ok and "Timeout" in res.message
    finally:
        slow.close()


def test_event_payload():
    r = Receiver([])
    try:
        asyncio.run(webhooks.send_event([hook(r.url, type="event")], "frontend", "shop", "Failed", "error", "rolled back"))
        body = r.bodies[0]
        assert body["phase"] == "Failed" and body["metadata"]["eventMessage"] == "rolled back"
        assert body["metadata"]["eventType"] == "Warning" and body["metadata"]["cmd"] == "approve"
        asyncio.run(webhooks.send_event([hook(r.url, type="event")], "frontend", "shop", "Failed", "warn", "check"))
        asyncio.run(webhooks.send_event([hook(r.url, type="event")], "frontend", "shop", "Succeeded", "info", "ok"))
        assert [b["metadata"]["eventType"] for b in r.bodies] == ["Warning", "Warning", "Normal"]  # Flagger's values
    finally:
        r.close()


@pytest.mark.parametrize("url", ["flagger-loadtester.test/", "ftp://host/x", "http://", "http:// spaced/",
                                 "https://:80/", "localhost:8080/hook"])
def test_a_webhook_url_that_is_not_http_is_refused(url: str):
    with pytest.raises(pydantic.ValidationError, match=r"must start with http:// or https://|has no host|not a valid URL|"
                                                       r"whitespace"):
        hook(url)


def test_a_webhook_url_with_credentials_is_refused():
    with pytest.raises(pydantic.ValidationError, match="credentials in the URL are refused"):
        hook("http://user:pw@host:80")


@pytest.mark.parametrize("url", ["http://flagger-loadtester.test/", "https://127.0.0.1:8443/gate/approve?x=1",
                                 "http://[::1]:9090/"])
def test_http_urls_pass(url: str):
    assert hook(url).url == url
