"""A live hub (``fedctl hub run``) on the demo fleet with Flagger webhooks configured: closed gates
hold the rollout (no traffic moves), opening them lets it go on; pre-rollout, the load-test
``rollout`` hook, post-rollout and ``event`` hooks are called with Flagger's payloads."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest

from federation.demo import run as demo_run
from federation.demo.fleet import LocalFleet
from federation.demo.procs import Supervisor, wait_for
from tests import gitlog
from tests.e2e.test_hub import FEDCTL
from tests.httpstub import Receiver
from tests.integration.conftest import free_port

pytestmark = pytest.mark.e2e


class Hooks(Receiver):
    """One receiver, a path per webhook; a gate answers 403 until opened."""

    def __init__(self) -> None:
        self.open: dict[str, bool] = {"confirm-rollout": False, "confirm-promotion": False}
        super().__init__(status=lambda name: 200 if self.open.get(name, True) else 403)
        self.url = self.base


def test_live_hub_runs_gates_and_hooks(tmp_path: Path):
    fleet = LocalFleet(tmp_path / "fleet")
    fleet.prepare()
    procs = Supervisor(tmp_path / "logs")
    hooks = Hooks()
    token = secrets.token_hex(16)
    (tmp_path / "token").write_text(token)
    port = free_port()
    auth = {"Authorization": f"Bearer {token}"}

    def rollout() -> dict[str, Any]:
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/api/v1/rollouts/shop/frontend", headers=auth, timeout=2)
            return r.json() if r.status_code == 200 else {}
        except httpx.HTTPError:
            return {}

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        fleet.start()
        procs.start("hey", ["hey", "-z", "300s", "-q", "20", "-c", "4", fleet.edge_url])
        procs.start("hub", [*FEDCTL, "hub", "run", "--fleet", str(fleet.fleet_file), "--state-dir", str(tmp_path / "hub"),
                            "--listen", f"127.0.0.1:{port}", "--token-file", str(tmp_path / "token"), "--tick", "0.3"])
        wait_for(ready, 60, "hub")
        doc = demo_run.canary_doc(demo_run.Pace.fast(), ("v1", ["vms"]), ("v2", ["eks", "onprem"]))
        doc["spec"]["analysis"]["webhooks"] = [
            {"name": n, "type": n, "url": f"{hooks.url}/{n}", "timeout": "5s", "metadata": {"team": "shop"}}
            for n in ("confirm-rollout", "pre-rollout", "rollout", "confirm-promotion", "post-rollout")
        ] + [{"name": "audit", "type": "event", "url": f"{hooks.url}/event"}]
        demo_run.release(fleet, doc, "release v2 with gates")

        # confirm-rollout closed: the rollout waits, asking again, and no traffic moves.
        wait_for(lambda: rollout().get("phase") == "Waiting" and hooks.count("confirm-rollout") >= 3, 90,
                 "rollout waiting at the closed confirm-rollout gate")
        assert rollout()["canaryWeight"] == 0
        assert hooks.count("pre-rollout") == 0 and hooks.count("rollout") == 0
        mesh = Path(fleet.git_url("mesh"))
        assert all(int(c.get("Canary-Weight", "0")) == 0 for c in gitlog.commits(mesh) if "Step" in c)
        first = hooks.calls["confirm-rollout"][0]
        assert first["name"] == "frontend" and first["namespace"] == "shop" and first["metadata"] == {"team": "shop"}
        assert first["type"] == "confirm-rollout" and first["phase"] in ("Initialized", "Waiting")

        hooks.open["confirm-rollout"] = True
        # Analysis runs up to maxWeight; confirm-promotion closed holds it there (checks go on).
        wait_for(lambda: rollout().get("phase") == "WaitingPromotion", 120, "waiting for promotion approval")
        asked = hooks.count("confirm-promotion")
        wait_for(lambda: hooks.count("confirm-promotion") >= asked + 3, 60, "promotion gate asked again")
        r = rollout()
        assert r["phase"] == "WaitingPromotion" and r["canaryWeight"] == 5000  # held at maxWeight
        assert hooks.count("pre-rollout") == 1 and hooks.count("rollout") >= 2
        assert hooks.calls["rollout"][0]["phase"] == "Progressing"

        hooks.open["confirm-promotion"] = True
        wait_for(lambda: rollout().get("phase") == "Succeeded", 120, "promoted once approved")
        wait_for(lambda: hooks.count("post-rollout") == 1, 30, "post-rollout called")
        events = [c["metadata"] for c in hooks.calls["event"]]
        assert any(e["eventType"] == "Normal" and "promoted" in e["eventMessage"] for e in events), events
        assert all(e["timestamp"].isdigit() for e in events)
        served = {httpx.get(fleet.edge_url, timeout=5).headers.get("x-version") for _ in range(50)}
        assert served == {"v2"}
        weights = [int(c["Canary-Weight"]) for c in gitlog.commits(mesh, oldest_first=True) if "Step" in c]
        assert max(weights) == 10000 and weights == sorted(weights)
    finally:
        procs.stop_all()
        fleet.stop()
        hooks.close()
