"""The list+watch informer against a scripted apiserver: paged lists, watch events from the list's version,
410 Gone and dropped streams relisting (and pruning what the fresh list no longer holds)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from common import informer as informer_module
from common.informer import Informer
from common.objects import Key
from tests.support.responses import Response


def obj(name: str, version: str = "1") -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name, "resourceVersion": version}}


def event(kind: str, body: dict[str, Any]) -> bytes:
    return json.dumps({"type": kind, "object": body}).encode() + b"\n"


@dataclass
class Apiserver:
    items: list[dict[str, Any]]
    version: str = "10"
    watches: list[Response] = field(default_factory=list)  # answered in order; then a stream that never ends
    lists: int = 0
    watched_from: list[str] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)  # watches wait for it

    def __post_init__(self) -> None:
        self.gate.set()

    async def __call__(self, *args: Any, **kwargs: Any) -> Response:
        if kwargs.get("watch"):
            self.watched_from.append(kwargs["resource_version"])
            await self.gate.wait()
            if self.watches:
                return self.watches.pop(0)
            await asyncio.Event().wait()
        start = int(kwargs.get("_continue") or 0)
        if start == 0:
            self.lists += 1
        page = self.items[start : start + kwargs["limit"]]
        more = start + kwargs["limit"] < len(self.items)
        meta = {"resourceVersion": self.version, **({"continue": str(start + kwargs["limit"])} if more else {})}
        return Response.of({"kind": "ThingList", "apiVersion": "v1", "metadata": meta, "items": page})


@dataclass
class Store:
    seen: dict[Key, dict[str, Any]] = field(default_factory=dict)
    relists: list[set[Key]] = field(default_factory=list)

    def on_event(self, kind: str, o: dict[str, Any]) -> None:
        key = (o["metadata"]["namespace"], o["metadata"]["name"])
        if kind == "DELETED":
            self.seen.pop(key, None)
        else:
            self.seen[key] = o

    def on_relist(self, keys: set[Key]) -> None:
        self.relists.append(keys)
        for key in [k for k in self.seen if k not in keys]:
            del self.seen[key]


async def until(condition: Any, within_s: float = 3.0) -> None:
    async with asyncio.timeout(within_s):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.fixture(autouse=True)
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(informer_module, "PAGE_SIZE", 2)
    monkeypatch.setattr(informer_module, "FIRST_PAGE", 2)


async def run(apiserver: Apiserver, store: Store) -> asyncio.Task[None]:
    informer = Informer(apiserver, store.on_event, store.on_relist, what="things", max_backoff=0.05)
    task = asyncio.create_task(informer.run())
    await until(informer.synced.is_set)
    return task


async def test_lists_in_pages_then_watches_from_the_lists_version() -> None:
    apiserver = Apiserver([obj(f"o{i}") for i in range(5)])
    apiserver.watches.append(
        Response(
            200,
            lines=[
                event("MODIFIED", obj("o1", "11")),
                event("BOOKMARK", {"metadata": {"resourceVersion": "12"}}),
                event("DELETED", obj("o2", "13")),
                event("ADDED", obj("o9", "14")),
            ],
        )
    )
    store = Store()
    task = await run(apiserver, store)
    assert store.relists[0] == {("ns", f"o{i}") for i in range(5)}
    assert store.seen[("ns", "o0")]["kind"] == "Thing"  # list items get their kind back
    await until(lambda: len(apiserver.watched_from) == 2)
    assert apiserver.watched_from == ["10", "14"]  # resumed from the last version seen
    assert sorted(n for _, n in store.seen) == ["o0", "o1", "o3", "o4", "o9"]
    assert store.seen[("ns", "o1")]["metadata"]["resourceVersion"] == "11"
    assert apiserver.lists == 1
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize(
    "watch",
    [
        Response(200, lines=[event("ERROR", {"code": 410, "reason": "Expired"})]),
        Response(410, reason="Gone"),
        Response(200, lines=[event("MODIFIED", obj("o0", "11"))], fail_after_lines=aiohttp.ServerDisconnectedError()),
        Response(200, lines=[b"{not json"]),
    ],
    ids=["410-event", "410-status", "dropped-stream", "garbage-line"],
)
async def test_a_broken_watch_relists_and_prunes_what_is_gone(watch: Response) -> None:
    apiserver = Apiserver([obj("o0"), obj("o1"), obj("o2")])
    apiserver.watches.append(watch)
    apiserver.gate.clear()
    store = Store()
    task = await run(apiserver, store)
    apiserver.items = [obj("o0", "20"), obj("o2", "20")]  # o1 was deleted while we were not watching
    apiserver.version = "20"
    apiserver.gate.set()
    await until(lambda: apiserver.lists == 2 and len(store.relists) == 2)
    assert sorted(n for _, n in store.seen) == ["o0", "o2"]
    await until(lambda: apiserver.watched_from[-1] == "20")
    assert not task.done()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_pages_are_sized_by_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large objects (a tenant's 1 MiB Secrets) come a few a page; ordinary ones 500 a page after the first."""
    monkeypatch.setattr(informer_module, "PAGE_SIZE", 500)
    from common.informer import MIN_PAGE, PAGE_BYTES, PAGE_SIZE, next_page_size

    assert next_page_size(50, 50, 50 * 2_000) == PAGE_SIZE  # 2 KB objects
    assert next_page_size(50, 50, 50 * 1024 * 1024) == 8  # 1 MiB objects: 8 MiB pages
    assert next_page_size(50, 50, 50 * 4 * 1024 * 1024) == MIN_PAGE
    assert next_page_size(50, 50, 50 * 100_000) == PAGE_BYTES // 100_000
    assert next_page_size(50, 0, 0) == 50
