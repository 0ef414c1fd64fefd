"""Fixtures of the unit tests."""

from __future__ import annotations

import ssl
from typing import Any

import pytest


@pytest.fixture
def ca_loads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per CA bundle parsed (``SSLContext.load_verify_locations``) during the test: what
    building a TLS context costs, for tests that a context is built once, not per request."""
    loads: list[int] = []
    real = ssl.SSLContext.load_verify_locations

    def counted(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loads.append(1)
        real(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    return loads
