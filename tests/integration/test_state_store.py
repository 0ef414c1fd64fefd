"""The hub's state stores through the same contract: the file store and the ConfigMap store (through
the official client against a real kube-apiserver, with the hub's ServiceAccount token and the RBAC
of clusters/hub/), including a stale writer refused by resourceVersion; operator commands in
ConfigMaps, and a command the hub cannot clear, which must not hold the rollout where it is."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import pytest

from federation.core import spec as specs
from federation.core.state import CheckResult, Decision, Phase, RolloutStatus
from federation.demo.procs import wait_for
from federation.hub import service, views
from federation.hub.commands import Commands, ConfigMapCommands
from federation.hub.store import (
    KEY_ANNOTATION,
    ConfigMapStore,
    FileStore,
    MemoryStore,
    configmap_name,
)
from federation.hub.worker import TickReport
from federation.runtimes import kubernetes as kube
from tests.real_kube import HUB_NS, Cluster

pytestmark = pytest.mark.integration

STATUS = RolloutStatus(phase=Phase.PROGRESSING, step=4, canary_weight=2500, failed_checks=1, target="v1->v2",
                       last_checks=(CheckResult("request-success-rate", "eks", 97.5, "fail", "97.5 < min 99"),))


@pytest.mark.parametrize("kind", ["file", "memory", "configmap"])
def test_store_round_trip(tmp_path: Path, kind: str, request: pytest.FixtureRequest):
    if kind == "configmap":
        store = ConfigMapStore(request.getfixturevalue("k8s").hub, HUB_NS)
    else:
        store = FileStore(tmp_path / "state") if kind == "file" else MemoryStore()

    async def scenario() -> None:
        assert await store.load("shop/frontend") == RolloutStatus()  # nothing stored yet
        await store.save("shop/frontend", STATUS)
        await store.save("shop/checkout", RolloutStatus(phase=Phase.SUCCEEDED))
        got = await store.load("shop/frontend")
        assert got == STATUS
        await store.save("shop/frontend", got.with_(step=5))  # an update at the version read
        assert (await store.load("shop/frontend")).step == 5
        assert await store.keys() == ["shop/checkout", "shop/frontend"]

    asyncio.run(scenario())


def test_configmap_store_refuses_a_stale_writer(k8s: Cluster):
    api = k8s.hub
    old, new = ConfigMapStore(api, HUB_NS), ConfigMapStore(k8s.hub, HUB_NS)  # two replicas

    async def scenario() -> None:
        await old.save("shop/frontend", STATUS)
        # The rollout's Lease moves: the new holder reads and advances it.
        taken = await new.load("shop/frontend")
        await new.save("shop/frontend", taken.with_(step=5, canary_weight=3000))
        # The old replica, still running a tick, tries to save what it decided: refused.
        with pytest.raises(kube.Conflict, match="changed by another writer"):
            await old.save("shop/frontend", STATUS.with_(step=5, canary_weight=2000))
        stored = await new.load("shop/frontend")
        assert (stored.step, stored.canary_weight) == (5, 3000)
        # Once it has read again it may write (nothing else moved since).
        await old.load("shop/frontend")
        await old.save("shop/frontend", stored.with_(step=6))
        assert (await new.load("shop/frontend")).step == 6

    asyncio.run(scenario())
    name = configmap_name("shop/frontend")
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63
    cm = k8s.admin.core.read_namespaced_config_map(name, HUB_NS)
    assert cm.metadata.annotations[KEY_ANNOTATION] == "shop/frontend"
    assert cm.metadata.labels["app.kubernetes.io/managed-by"] == "federation-hub"


def test_configmap_names_do_not_collide():
    names = {configmap_name(k) for k in ("shop/front-end", "shop/front.end", "shop-front/end", "Shop/front_end")}
    assert len(names) == 4
    long = configmap_name("a-very-long-namespace-name-here/" + "x" * 200)
    assert len(long) <= 63


def test_commands_through_configmaps_reach_the_replica_running_the_rollout(k8s: Cluster, tmp_path: Path):
    """With the hub's own RBAC: a consumed command is deleted (clusters/hub grants delete on configmaps)."""
    api_replica, owner = ConfigMapCommands(k8s.hub, HUB_NS), ConfigMapCommands(k8s.hub, HUB_NS)

    async def scenario() -> None:
        assert await owner.peek("shop/frontend") is None
        await api_replica.put("shop/frontend", "pause")
        await api_replica.put("shop/frontend", "promote")  # a newer command replaces a pending one
        assert await owner.peek("shop/frontend") == "promote"
        assert await ConfigMapStore(k8s.hub, HUB_NS).keys() == []  # commands are not rollout statuses
        await owner.done("shop/frontend")
        await owner.done("shop/frontend")  # already gone: fine
        assert await api_replica.peek("shop/frontend") is None
        with pytest.raises(ValueError, match="unknown command"):
            await api_replica.put("shop/frontend", "delete-everything")
        files = Commands(tmp_path / "commands")  # the file variant, same contract
        await files.put("shop/frontend", "abort")
        assert await files.peek("shop/frontend") == "abort"
        await files.done("shop/frontend")
        assert await files.peek("shop/frontend") is None

    asyncio.run(scenario())


class RecordingWorker:
    """Stands in for the rollout worker: records the command each tick was given. The subject here
    is the hub's command handling against the real API and its RBAC, not the core's decision."""

    given: list[str | None] = []

    def __init__(self, key: str, *_: object) -> None:
        self.key = key

    async def tick(self, canary: object, command: str | None = None) -> TickReport:
        RecordingWorker.given.append(command)
        st = RolloutStatus(phase=Phase.PROMOTING)
        return TickReport(self.key, 0.0, st, Decision(st, ()), None)


def test_a_command_that_cannot_be_cleared_is_shown_and_does_not_hold_the_rollout(
        k8s: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    """A hub that cannot clear a consumed command (here: RBAC that only reads configmaps; before
    the fix, clusters/hub granted no delete) applies it once: it is not given to the core again at
    every tick (a repeated promote would answer "promote ignored" forever), the failure is in the
    rollout's status and in the log, and once the ConfigMap is gone the hub forgets it."""
    k8s.server.apply([
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "hub-without-delete", "namespace": HUB_NS}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "hub-without-delete", "namespace": HUB_NS},
         "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                    "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "hub-without-delete", "namespace": HUB_NS},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "hub-without-delete"},
         "subjects": [{"kind": "ServiceAccount", "name": "hub-without-delete", "namespace": HUB_NS}]}])
    kc = k8s.server.token_kubeconfig(HUB_NS, "hub-without-delete", tmp_path / "kc", "no-delete")
    limited = kube.Api(kube.api_client(specs.Kubeconfig(path=str(kc), context="no-delete")))
    commands = ConfigMapCommands(limited, HUB_NS)
    operator = ConfigMapCommands(k8s.hub, HUB_NS)  # the API replica taking the operator's calls
    monkeypatch.setattr(service, "RolloutWorker", RecordingWorker)
    RecordingWorker.given = []

    class NoParts:
        async def close(self) -> None: ...

    fleet = specs.Fleet.model_validate({
        "apiVersion": specs.API_VERSION, "kind": "Fleet", "metadata": {"name": "k"},
        "spec": {"zones": [{"name": "eks", "kind": "kubernetes", "git": {"url": str(tmp_path / "eks.git")},
                            "prometheus": {"url": "http://127.0.0.1:1"}, "ingress": {"address": "127.0.0.1", "port": 1},
                            "kubeconfig": {"path": str(kc), "context": "no-delete"}}],
                 "mesh": {"provider": "envoy", "git": {"url": str(tmp_path / "mesh.git")},
                          "edge": {"rdsPath": str(tmp_path / "rds.json"), "admin": {"address": "127.0.0.1", "port": 1}}}}})
    canary = specs.FederatedCanary.model_validate({
        "apiVersion": specs.API_VERSION, "kind": "FederatedCanary", "metadata": {"name": "frontend", "namespace": "shop"},
        "spec": {"service": {"name": "frontend"}, "primary": {"version": "v1", "zones": ["eks"]},
                 "canary": {"version": "v2", "zones": ["eks"]}, "analysis": {"stepWeight": 20, "metrics": []}}})
    hub = service.Hub(fleet, tmp_path / "hub", tick=0.05, parts=NoParts(), commands=commands)  # type: ignore[arg-type]
    hub.canaries = {"shop/frontend": canary}

    async def scenario() -> None:
        await operator.put("shop/frontend", "promote")
        task = asyncio.create_task(hub._run(service.RolloutWorker("shop/frontend"), "shop/frontend"))
        try:
            await asyncio.to_thread(wait_for, lambda: len(RecordingWorker.given) >= 5, 60, "five ticks")
            assert RecordingWorker.given[0] == "promote" and set(RecordingWorker.given[1:]) == {None}
            view = (await views.rollout(hub, "shop/frontend"))["commandNotCleared"]
            assert view["command"] == "promote" and "access denied (403)" in view["error"]
            assert await commands.peek("shop/frontend") == "promote"  # still there: the hub may not write it
            # An operator (or a hub with the fixed RBAC) removes it: the hub forgets the failure.
            await ConfigMapCommands(k8s.hub, HUB_NS).done("shop/frontend")
            n = len(RecordingWorker.given)
            await asyncio.to_thread(wait_for, lambda: len(RecordingWorker.given) >= n + 2, 60, "two more ticks")
            assert (await views.rollout(hub, "shop/frontend"))["commandNotCleared"] is None
            # A newer command is applied (once) even while the hub cannot clear commands.
            await operator.put("shop/frontend", "pause")
            await asyncio.to_thread(wait_for, lambda: "pause" in RecordingWorker.given, 60, "pause applied")
            n = len(RecordingWorker.given)
            await asyncio.to_thread(wait_for, lambda: len(RecordingWorker.given) >= n + 3, 60, "three more ticks")
            assert RecordingWorker.given.count("pause") == 1
        finally:
            hub.stop()
            await task
            hub.lock.release()
            limited.close()

    with caplog.at_level(logging.ERROR, logger="federation.hub"):
        asyncio.run(scenario())
    stuck = [r.getMessage() for r in caplog.records if "cannot be cleared" in r.getMessage()]
    assert len(stuck) == 2 and "command promote" in stuck[0] and "403" in stuck[0]  # once per command


def test_command_answers_reach_the_replica_that_took_the_call(k8s: Cluster, tmp_path: Path):
    """The replica running the rollout writes the answer; the one whose API caller waits reads it.
    A newer command that replaced the consumed one stays pending."""

    async def scenario(api_replica, owner) -> None:  # type: ignore[no-untyped-def]
        cid = await api_replica.put("shop/frontend", "pause")
        pending = await owner.pending("shop/frontend")
        assert pending is not None and (pending["command"], pending["id"]) == ("pause", cid)
        newer = await api_replica.put("shop/frontend", "abort")  # arrives while the pause is consumed
        await owner.done("shop/frontend", cid, {"state": "accepted", "message": "paused at step 2"})
        assert (await api_replica.answer("shop/frontend", cid))["message"] == "paused at step 2"
        assert await api_replica.answer("shop/frontend", newer) is None
        assert await owner.peek("shop/frontend") == "abort"
        await owner.done("shop/frontend", newer, {"state": "rejected", "message": "abort ignored: phase Failed"})
        assert await owner.peek("shop/frontend") is None
        assert (await api_replica.answer("shop/frontend", newer))["state"] == "rejected"

    asyncio.run(scenario(ConfigMapCommands(k8s.hub, HUB_NS), ConfigMapCommands(k8s.hub, HUB_NS)))
    files = Commands(tmp_path / "commands")
    asyncio.run(scenario(files, files))
