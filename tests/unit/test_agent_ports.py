"""The agent's instance ports go round their range: an instance started just after another stopped
does not get the port it left. (The chaos soak saw a request for one service answered by another
service's build: the zone's Envoy still sent the stopped version's cluster to its old port, where a
new instance of another service had just started.)"""

from __future__ import annotations

import socket
from pathlib import Path

from vmagent.supervisor import Instance, Supervisor, free_port


def _free_range(n: int) -> int:
    """A base port whose next ``n`` ports bind now (ephemeral range avoided)."""
    for base in range(20000, 30000, n):
        try:
            socks = []
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free range")


def test_a_port_an_instance_just_left_is_not_given_to_the_next(tmp_path: Path):
    base = _free_range(4)
    sup = Supervisor(str(tmp_path / "logs"), base, base + 3)
    first, _, _, _ = sup.prepare("frontend/v2", "frontend", "v2", ["app", "--port", "${PORT}"], {})
    sup.instances["frontend/v2"] = Instance("frontend/v2", "frontend", "v2", first, 1, ["app"], "/healthz")
    second, argv, env, _ = sup.prepare("cart/v1", "cart", "v1", ["app", "--port", "${PORT}"], {})
    assert second != first and argv == ["app", "--port", str(second)] and env["PORT"] == str(second)
    del sup.instances["frontend/v2"]  # frontend v2 stopped; its port is free again
    third, _, _, _ = sup.prepare("payment/v2", "payment", "v2", ["app", "--port", "${PORT}"], {})
    assert third not in (first, second)
    # Round the range: after the last port, the first again (it is free).
    assert sup.prepare("search/v1", "search", "v1", ["app"], {})[0] == base + 3
    assert sup.prepare("profile/v1", "profile", "v1", ["app"], {})[0] == base


def test_free_port_wraps_and_skips_taken_and_bound_ports():
    base = _free_range(3)
    with socket.socket() as held:
        held.bind(("127.0.0.1", base + 2))
        assert free_port(base, base + 2, set(), start=base + 2) == base  # bound elsewhere: wrap
        assert free_port(base, base + 2, {base}, start=base + 2) == base + 1
