"""Caps where a request costs memory or storage: classes in all and per teacher token, segments per session."""

from __future__ import annotations

import asyncio
import json

import pytest

from smartsession.hub.client import HubError, create_class
from smartsession.hub.standalone import running_hub
from testkit.processes import HubProcess


def test_a_teacher_token_mints_a_few_classes_and_the_server_holds_a_bounded_number(tmp_path):
    async def main():
        async with running_hub(data_dir=tmp_path, max_classes_per_token=3, max_classes=6) as (hub, url):
            loop = asyncio.get_running_loop()
            make = lambda token: loop.run_in_executor(None, create_class, url, "Minted", token)  # noqa: E731
            first = await make(hub.admin_token)
            for _ in range(3):
                await make(first["teacher_token"])
            with pytest.raises(HubError, match="created 3 classes, its most"):
                await make(first["teacher_token"])
            await make(hub.admin_token)
            await make(hub.admin_token)  # the sixth
            with pytest.raises(HubError, match="holds 6 classes"):
                await make(hub.admin_token)
            assert hub.store.class_count() == 6

    asyncio.run(asyncio.wait_for(main(), 60))


def test_segments_per_session_are_capped_and_a_new_session_starts_afresh(tmp_path, kit):
    async def main():
        async with running_hub(data_dir=tmp_path, max_segments=5) as (hub, url):
            info = hub.create_class("Segmented")
            ws, _ = await kit.teacher(url, info)
            results = []
            for i in range(7):
                await ws.send(json.dumps({"type": "command", "v": 1, "command": "start_segment", "title": f"S{i}",
                                          "id": i}))
                results.append(await kit.until(ws, lambda m: m.get("type") == "result"))
            assert [r["ok"] for r in results] == [True] * 5 + [False] * 2
            assert "the most it may have" in results[-1]["error"]
            await ws.send(json.dumps({"type": "command", "v": 1, "command": "start_session", "id": 10}))
            await kit.until(ws, lambda m: m.get("type") == "result")
            await ws.send(json.dumps({"type": "command", "v": 1, "command": "start_segment", "title": "Fresh",
                                      "id": 11}))
            assert (await kit.until(ws, lambda m: m.get("type") == "result"))["ok"]
            await ws.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_the_per_token_class_count_survives_a_restart(tmp_path):
    async def main(made_before: int):
        async with running_hub(data_dir=tmp_path, max_classes_per_token=2) as (hub, url):
            loop = asyncio.get_running_loop()
            make = lambda token: loop.run_in_executor(None, create_class, url, "Minted", token)  # noqa: E731
            if not made_before:
                (tmp_path / "teacher").write_text((await make(hub.admin_token))["teacher_token"])
            token = (tmp_path / "teacher").read_text()
            for _ in range(2 - made_before):
                await make(token)
            with pytest.raises(HubError, match="created 2 classes, its most"):
                await make(token)

    asyncio.run(asyncio.wait_for(main(0), 60))
    # The count is in the store: a restarted hub does not hand the token a fresh allowance.
    asyncio.run(asyncio.wait_for(main(2), 60))


@pytest.mark.slow
def test_the_per_token_class_cap_holds_across_nodes_sharing_a_store(tmp_path, pg_url):
    args = ("--HubConfig.max_classes_per_token=2",)
    with HubProcess(tmp_path / "a", store_url=pg_url, args=args) as a, \
            HubProcess(tmp_path / "b", store_url=pg_url, args=args) as b:
        token = a.create_class("Base")["teacher_token"]
        create_class(a.url, "One", token)
        create_class(b.url, "Two", token)  # the second on another node: the count is the deployment's
        for hub in (a, b):
            with pytest.raises(HubError, match="created 2 classes, its most"):
                create_class(hub.url, "Three", token)
