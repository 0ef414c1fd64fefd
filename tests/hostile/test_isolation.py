"""One bad file affects only its own rollout: on the demo fleet's real Git repos, with the real
discovery, API and workers (steps applied in memory). A bad namespace, a malformed file in a zone
repo, a YAML typo in a running canary, a second canary for one service: each is a problem of its
own file, shown by the API; everything else keeps running."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from federation.core import decide as core
from federation.core.state import RolloutStatus
from federation.hub.commands import Commands
from federation.hub.store import FileStore
from tests import hubfakes
from tests.hostile.gitfleet import canary_text, push, running_hub

KEY = "shop/frontend"


def test_a_bad_namespace_does_not_take_the_api_down(tmp_path: Path):
    async def scenario() -> None:
        async with running_hub(tmp_path) as (fleet, hub, client):
            push(fleet, "mesh", {"canaries/frontend.yaml": canary_text(),
                                 "canaries/evil.yaml": canary_text("evil", "n" * 300, "evil"),
                                 "canaries/nul.yaml": canary_text("nul", "te\x00am", "nul")})
            await hub.discover()
            r = await client.get("/api/v1/rollouts")
            assert r.status_code == 200, r.text
            body = r.json()
            assert [i["rollout"] for i in body["items"]] == [KEY]
            assert set(body["problems"]) == {"canaries/evil.yaml", "canaries/nul.yaml"}, body["problems"]
            assert "metadata.namespace" in body["problems"]["canaries/evil.yaml"]
            assert str(tmp_path) not in json.dumps(body["problems"])  # repo paths, not the hub's clone
            assert (await client.get(f"/api/v1/rollouts/{KEY}")).status_code == 200
            await hubfakes.until(lambda: _step_at_least(hub, 1), 30, "the good rollout's first step")

    asyncio.run(scenario())


async def _step_at_least(hub: object, n: int) -> bool:
    return bool((await hub.store.load(KEY)).step >= n)  # type: ignore[attr-defined]


def test_a_malformed_file_in_a_zone_repo_does_not_fail_discovery(tmp_path: Path):
    async def scenario() -> None:
        async with running_hub(tmp_path) as (fleet, hub, _):
            push(fleet, "mesh", {"canaries/frontend.yaml": canary_text()})
            push(fleet, "eks", {"other-team.yaml": "kind: ZoneRelease\nspec: {service: x, versions: [\n",
                                "bomb.yaml": "a: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
                                    f"{c}: &{c} [" + ",".join([f"*{p}"] * 10) + "]\n"
                                    for p, c in zip("abcdefg", "bcdefgh", strict=True))})
            await hub.discover()
            assert KEY in hub.canaries and hub.canaries[KEY].spec.checksum, hub.problems
            assert hub.problems == {}

    asyncio.run(scenario())


def test_a_typo_in_a_running_canary_keeps_it_running_shown_invalid_and_pausable(tmp_path: Path):
    async def scenario() -> None:
        async with running_hub(tmp_path) as (fleet, hub, client):
            push(fleet, "mesh", {"canaries/frontend.yaml": canary_text()})
            await hub.discover()
            await hubfakes.until(lambda: _step_at_least(hub, 1), 30, "first step")
            push(fleet, "mesh", {"canaries/frontend.yaml": canary_text().replace("spec:", "spec:\n  : [", 1)})
            await hub.discover()
            r = await client.get(f"/api/v1/rollouts/{KEY}")
            assert r.status_code == 200, r.text
            invalid = r.json()["invalid"]
            assert invalid and invalid.startswith("canaries/frontend.yaml: invalid YAML at line"), invalid
            assert not hub.tasks[KEY].done()
            assert b'federation_canary_invalid{name="frontend",namespace="shop"} 1.0' in hub.metrics.text()
            assert (await client.get("/readyz")).json()["invalid"] == 1
            r = await client.post(f"/api/v1/rollouts/{KEY}/pause", params={"wait": 20})
            assert r.status_code == 200 and r.json()["state"] == "accepted", r.text
            push(fleet, "mesh", {"canaries/frontend.yaml": canary_text()})  # fixed
            await hub.discover()
            assert (await client.get(f"/api/v1/rollouts/{KEY}")).json()["invalid"] is None
            push(fleet, "mesh", {"canaries/frontend.yaml": None})  # removed: the rollout goes
            await hub.discover()
            assert KEY not in hub.canaries

    asyncio.run(scenario())


def test_a_second_canary_for_one_service_is_refused_and_the_first_keeps_it(tmp_path: Path):
    async def scenario() -> None:
        async with running_hub(tmp_path) as (fleet, hub, client):
            push(fleet, "mesh", {"canaries/frontend.yaml": canary_text()})
            await hub.discover()
            # Sorted first by path, but the running one keeps the service.
            push(fleet, "mesh", {"canaries/a-copy.yaml": canary_text("copy", "another")})
            await hub.discover()
            assert list(hub.canaries) == [KEY]
            problem = hub.problems["another/copy"]
            assert "service 'frontend' already has a canary (shop/frontend in canaries/frontend.yaml)" in problem
            # Shown as a rollout in phase Invalid with the reason; a command is refused with it.
            items = {i["rollout"]: i for i in (await client.get("/api/v1/rollouts")).json()["items"]}
            assert items["another/copy"]["phase"] == "Invalid" and items["another/copy"]["invalid"] == problem
            assert items[KEY]["phase"] != "Invalid"
            one = (await client.get("/api/v1/rollouts/another/copy")).json()
            assert one["phase"] == "Invalid", one
            r = await client.post("/api/v1/rollouts/another/copy/pause", params={"wait": 1})
            assert r.status_code == 409 and "already has a canary" in r.json()["message"], r.text
            assert (await client.get("/readyz")).json()["invalid"] == 1

    asyncio.run(scenario())


def test_a_hub_restarted_while_a_running_canary_is_invalid_runs_its_last_valid_spec_from_git(tmp_path: Path):
    async def scenario() -> None:
        async with running_hub(tmp_path) as (fleet, hub, _):
            push(fleet, "mesh", {"canaries/frontend.yaml": canary_text()})
            await hub.discover()
            await hubfakes.until(lambda: _step_at_least(hub, 1), 30, "first step")
            good = hub.canaries[KEY].spec
        push(fleet, "mesh", {"canaries/frontend.yaml": canary_text().replace("spec:", "spec:\n  : [", 1)})
        push(fleet, "mesh", {"README.md": "unrelated"})  # the typo is not the newest commit
        async with running_hub(tmp_path, fleet) as (_, hub, client):  # same state dir: a restart
            await hub.discover()
            assert KEY in hub.canaries, (hub.problems, hub.rejected)
            assert core.same_target(hub.canaries[KEY].spec, core.target_of(good))
            assert hub.canaries[KEY].spec.checksum == good.checksum
            assert not hub.tasks[KEY].done()
            view = (await client.get(f"/api/v1/rollouts/{KEY}")).json()
            assert view["phase"] != "Invalid" and view["invalid"].startswith("canaries/frontend.yaml: invalid YAML")
            r = await client.post(f"/api/v1/rollouts/{KEY}/pause", params={"wait": 20})
            assert r.status_code == 200 and r.json()["state"] == "accepted", r.text

    asyncio.run(scenario())


def test_a_canary_invalid_from_the_start_is_listed_as_invalid_and_never_run(tmp_path: Path):
    async def scenario() -> None:
        async with running_hub(tmp_path) as (fleet, hub, client):
            def nowhere(doc: dict[str, Any]) -> None:
                doc["spec"]["canary"]["zones"] = ["mars"]
            push(fleet, "mesh", {"canaries/frontend.yaml": canary_text(change=nowhere)})
            push(fleet, "mesh", {"README.md": "unrelated"})
            await hub.discover()
            assert KEY not in hub.canaries and KEY not in hub.tasks  # no history of a valid one: not run
            body = (await client.get("/api/v1/rollouts")).json()
            [item] = body["items"]
            assert item["rollout"] == KEY and item["phase"] == "Invalid" and "mars" in item["invalid"], item
            r = await client.post(f"/api/v1/rollouts/{KEY}/abort", params={"wait": 1})
            assert r.status_code == 409 and "file is invalid" in r.json()["message"], r.text

    asyncio.run(scenario())


def test_state_and_command_files_never_share_a_name(tmp_path: Path):
    store = FileStore(tmp_path / "state")
    a, b = "team/shop/web", "team__shop/web"
    store.write(a, RolloutStatus(step=1))
    store.write(b, RolloutStatus(step=2))
    assert (store.read(a).step, store.read(b).step) == (1, 2)
    assert store.stored_keys() == sorted([a, b])
    commands = Commands(tmp_path / "commands")

    async def put() -> tuple[str | None, str | None]:
        await commands.put(a, "pause")
        await commands.put(b, "abort")
        return await commands.peek(a), await commands.peek(b)

    assert asyncio.run(put()) == ("pause", "abort")
    for p in [*(tmp_path / "state").iterdir(), *(tmp_path / "commands").iterdir()]:
        assert p.stat().st_mode & 0o077 == 0, p  # 0600: nobody else reads the hub's state


def test_state_written_under_the_old_names_is_still_read(tmp_path: Path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "shop__frontend.json").write_text(json.dumps(RolloutStatus(step=3).for_storage()))
    store = FileStore(tmp_path / "state")
    assert store.read(KEY).step == 3 and store.stored_keys() == [KEY]
