"""The Event recorder: one Event per (object, reason, message), repeats within a minute dropped, later ones
counted on the same Event, a full queue dropped and counted, an unreachable apiserver never raised."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, cast

import aiohttp

from refresher import events as events_module
from refresher import metrics
from refresher.events import EventRecorder
from refresher.targets import Target
from tests.support.memcluster import FakeClock
from tests.support.responses import Response

TARGET = Target("GitRepository", "apps", "web", "uid-web", "github", "web-git-token", "app")


@dataclass
class Core:
    created: list[dict[str, Any]] = field(default_factory=list)
    patched: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    fail: BaseException | None = None
    gate: asyncio.Event | None = None  # hold writes until set

    async def create_namespaced_event(self, namespace: str, body: dict[str, Any], **_: Any) -> Response:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        self.created.append(body)
        return Response(201)

    async def patch_namespaced_event(self, name: str, namespace: str, body: dict[str, Any], **_: Any) -> Response:
        self.patched.append((name, body))
        return Response(200)


async def test_repeats_are_dropped_within_a_minute_then_counted_on_the_same_event() -> None:
    core, clock = Core(), FakeClock(0.0)
    recorder = EventRecorder(cast(Any, core), clock=clock)
    recorder.emit_for(TARGET, "Warning", "TokenMintFailed", "github token: HTTP 502")
    recorder.emit_for(TARGET, "Warning", "TokenMintFailed", "github token: HTTP 502")
    recorder.emit_for(TARGET, "Warning", "SecretConflict", "another message")
    await recorder.drain()
    assert [e["reason"] for e in core.created] == ["TokenMintFailed", "SecretConflict"]
    first = core.created[0]
    assert first["involvedObject"] == {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "namespace": "apps",
        "name": "web",
        "uid": "uid-web",
    }
    assert first["count"] == 1
    clock.advance(61)
    recorder.emit_for(TARGET, "Warning", "TokenMintFailed", "github token: HTTP 502")
    await recorder.drain()
    assert core.patched == [
        (first["metadata"]["name"], {"count": 2, "lastTimestamp": core.patched[0][1]["lastTimestamp"]})
    ]


async def test_a_full_queue_drops_and_counts_instead_of_growing() -> None:
    core = Core(gate=asyncio.Event())
    recorder = EventRecorder(cast(Any, core), clock=FakeClock(0.0))
    before = metrics.EVENTS_DROPPED.labels("queue-full")._value.get()  # prometheus-client has no public getter
    total = events_module.QUEUE_SIZE + events_module.WORKERS + 25
    for i in range(total):
        recorder.emit_for(TARGET, "Warning", "TokenMintFailed", f"message {i}")
    await asyncio.sleep(0)
    dropped = metrics.EVENTS_DROPPED.labels("queue-full")._value.get() - before
    assert 25 <= dropped <= 25 + events_module.WORKERS
    core.gate.set()  # type: ignore[union-attr]
    await recorder.drain()
    assert len(core.created) == total - dropped


async def test_normal_events_are_rate_limited_and_warnings_never() -> None:
    """A start that fills 10,000 Secrets at once must not post 10,000 "TokenMinted" Events (as many apiserver
    writes as the Secrets): a burst, then a steady rate; Warnings all pass."""
    core, clock = Core(), FakeClock(0.0)
    recorder = EventRecorder(cast(Any, core), clock=clock)
    before = metrics.EVENTS_DROPPED.labels("rate-limited")._value.get()
    targets = [
        Target("GitRepository", "apps", f"r{i}", f"uid-{i}", "github", f"r{i}-git-token", "app") for i in range(10_000)
    ]
    for target in targets:
        recorder.emit_for(target, "Normal", "TokenMinted", "Secret holds a github token")
    for target in targets[:200]:
        recorder.emit_for(target, "Warning", "TokenMintFailed", "github token: HTTP 502")
    clock.advance(2)  # two seconds later: NORMAL_PER_S x 2 more
    for target in targets[:100]:
        recorder.emit_for(target, "Normal", "TokenMinted", "Secret holds a github token, again")
    await recorder.drain()
    normal = [e for e in core.created if e["type"] == "Normal"]
    warnings = [e for e in core.created if e["type"] == "Warning"]
    allowed = events_module.NORMAL_BURST + 2 * events_module.NORMAL_PER_S
    assert len(normal) == allowed
    assert len(warnings) == 200
    assert metrics.EVENTS_DROPPED.labels("rate-limited")._value.get() - before == 10_100 - allowed
    clock.advance(60)  # a quiet minute later a new object's Event is written at once
    recorder.emit_for(TARGET, "Normal", "TokenMinted", "Secret holds a github token")
    await recorder.drain()
    assert core.created[-1]["involvedObject"]["uid"] == TARGET.uid


async def test_an_unreachable_apiserver_is_logged_never_raised(caplog: Any) -> None:
    core = Core(fail=aiohttp.ServerDisconnectedError())
    recorder = EventRecorder(cast(Any, core), clock=FakeClock(0.0))
    recorder.emit_for(TARGET, "Warning", "TokenMintFailed", "github token: HTTP 502")
    await recorder.drain()
    assert core.created == []
    assert any(r.getMessage() == "event not recorded" for r in caplog.records)


class CountingDict(dict[Any, Any]):
    """The recorder's memory of what it told, counting full scans of it."""

    scans = 0

    def items(self) -> Any:
        CountingDict.scans += 1
        return super().items()


async def test_remembering_many_objects_stays_linear(monkeypatch: Any) -> None:
    """Regression: past PRUNE_ABOVE recent entries every Event scanned the whole map (quadratic: a refresher
    serving 100,000 GitRepositories slowed to ~60 Secrets/s while announcing TokenMinted)."""
    monkeypatch.setattr(events_module, "PRUNE_ABOVE", 100)
    core, clock = Core(gate=asyncio.Event()), FakeClock(0.0)
    recorder = EventRecorder(cast(Any, core), clock=clock)
    recorder._seen = CountingDict()
    CountingDict.scans = 0
    for i in range(10_000):
        target = Target("GitRepository", "apps", f"r{i}", f"uid-{i}", "github", f"r{i}-git-token", "app")
        recorder.emit_for(target, "Warning", "TokenMintFailed", "github token: HTTP 502")
    assert CountingDict.scans <= 10  # doubling: 100, 200, 400 ... 12,800
    assert len(recorder._seen) == 10_000  # nothing old enough to forget
    clock.advance(events_module.FORGET_AFTER_S + 1)
    for i in range(10_001, 30_000):  # old entries are still forgotten once the map has doubled again
        target = Target("GitRepository", "apps", f"r{i}", f"uid-{i}", "github", f"r{i}-git-token", "app")
        recorder.emit_for(target, "Warning", "TokenMintFailed", "github token: HTTP 502")
    assert not any(int(key[0].removeprefix("uid-")) < 10_000 for key in recorder._seen)
    core.gate.set()  # type: ignore[union-attr]
    for task in recorder._workers:
        task.cancel()
