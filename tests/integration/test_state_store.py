"""The hub's state stores through the same contract: the file store and the ConfigMap store (through
the official client against the emulator), including a stale writer refused by resourceVersion."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from federation.core import spec as specs
from federation.core.state import CheckResult, Phase, RolloutStatus
from federation.hub.store import KEY_ANNOTATION, ConfigMapStore, FileStore, MemoryStore, configmap_name
from federation.runtimes import kubernetes as kube
from tests.k8s_emulator import Emulator

pytestmark = pytest.mark.integration

STATUS = RolloutStatus(phase=Phase.PROGRESSING, step=4, canary_weight=2500, failed_checks=1, target="v1->v2",
                       last_checks=(CheckResult("request-success-rate", "eks", 97.5, "fail", "97.5 < min 99"),))


def _api(emu: Emulator, tmp_path: Path) -> kube.Api:
    return kube.Api(kube.api_client(specs.Kubeconfig(path=emu.kubeconfig(str(tmp_path / "kc")), context="emulated")))


@pytest.mark.parametrize("kind", ["file", "memory", "configmap"])
def test_store_round_trip(tmp_path: Path, kind: str):
    with Emulator() as emu:
        store = {"file": lambda: FileStore(tmp_path / "state"), "memory": MemoryStore,
                 "configmap": lambda: ConfigMapStore(_api(emu, tmp_path), "hub")}[kind]()

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


def test_configmap_store_refuses_a_stale_writer(tmp_path: Path):
    with Emulator() as emu:
        api = _api(emu, tmp_path)
        old, new = ConfigMapStore(api, "hub"), ConfigMapStore(api, "hub")  # two replicas

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
        cm = api.core.read_namespaced_config_map(name, "hub")
        assert cm.metadata.annotations[KEY_ANNOTATION] == "shop/frontend"
        assert cm.metadata.labels["app.kubernetes.io/managed-by"] == "federation-hub"


def test_configmap_names_do_not_collide():
    names = {configmap_name(k) for k in ("shop/front-end", "shop/front.end", "shop-front/end", "Shop/front_end")}
    assert len(names) == 4
    long = configmap_name("a-very-long-namespace-name-here/" + "x" * 200)
    assert len(long) <= 63


def test_commands_through_configmaps_reach_the_replica_running_the_rollout(tmp_path: Path):
    from federation.hub.service import Commands
    from federation.hub.store import ConfigMapCommands

    with Emulator() as emu:
        api = _api(emu, tmp_path)
        api_replica, owner = ConfigMapCommands(api, "hub"), ConfigMapCommands(api, "hub")

        async def scenario() -> None:
            assert await owner.peek("shop/frontend") is None
            await api_replica.put("shop/frontend", "pause")
            await api_replica.put("shop/frontend", "promote")  # a newer command replaces a pending one
            assert await owner.peek("shop/frontend") == "promote"
            assert await ConfigMapStore(api, "hub").keys() == []  # commands are not rollout statuses
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
