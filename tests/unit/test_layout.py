"""The hub stays a room a newcomer can live in: no module of ``federation/hub`` over 250 lines
(the hub-internals issue's bound; the service, desk, views, journal, web and web pages split at it)."""

from __future__ import annotations

from pathlib import Path

HUB = Path(__file__).resolve().parents[2] / "federation" / "hub"
LIMIT = 250


def test_no_hub_module_over_the_limit():
    sizes = {p.name: len(p.read_text().splitlines()) for p in sorted(HUB.glob("*.py"))}
    assert sizes, HUB
    assert {name: n for name, n in sizes.items() if n > LIMIT} == {}
