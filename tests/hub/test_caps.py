"""Caps where a request costs memory or storage: classes in all and per teacher token, segments per session."""

from __future__ import annotations

import asyncio
import json

import pytest

from smartsession.hub.client import HubError, create_class
from smartsession.hub.standalone import running_hub


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
