"""Local fleets running at once (the suite's e2e tests beside the chaos soak, two demos) give their
app instances disjoint ports: with one shared range, a stopped instance's port was taken by another
fleet's instance while the first fleet's Envoy still routed there (answers from another fleet)."""

from __future__ import annotations

import socket
from pathlib import Path

from federation.demo import fleet as demo_fleet
from federation.demo.fleet import LocalFleet


def _ranges(f: LocalFleet) -> set[int]:
    return {p for z in f.zones for p in range(z.app_ports[0], z.app_ports[1] + 1)}


def test_two_fleets_at_once_hold_disjoint_app_ports_until_one_stops(tmp_path: Path):
    a, b = LocalFleet(tmp_path / "a"), LocalFleet(tmp_path / "b")
    try:
        assert not _ranges(a) & _ranges(b)
        assert all(z.app_ports[1] - z.app_ports[0] + 1 == demo_fleet.APP_PORTS for z in a.zones)
        first = a.zones[0].app_ports[0]
        a.stop()  # nothing started: releases its block
        c = LocalFleet(tmp_path / "c")
        try:
            assert c.zones[0].app_ports[0] == first
        finally:
            c.stop()
    finally:
        b.stop()


def test_a_block_with_a_port_in_use_is_skipped(tmp_path: Path):
    probe = LocalFleet(tmp_path / "probe")
    base = probe.zones[0].app_ports[0]
    probe.stop()
    with socket.socket() as held:
        held.bind(("127.0.0.1", base + 5))  # e.g. a kept demo's instance, which holds no lock
        f = LocalFleet(tmp_path / "f")
        try:
            assert base + 5 not in _ranges(f)
        finally:
            f.stop()
