"""Leader election against an in-memory Lease API with resourceVersion conflicts, on a fake clock: acquire,
respect a live holder, take over an expired one, step down when renewals fail (a dropped connection included),
come back, release on shutdown, and never lead on after the work itself crashed."""

from __future__ import annotations

import asyncio
import copy
import json
from dataclasses import dataclass, field
from typing import Any, cast

import aiohttp
import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from common.times import parse_rfc3339
from refresher.leader import LeaderElector
from tests.support.responses import Response


@dataclass
class Leases:
    lease: dict[str, Any] | None = None
    version: int = 0
    down: bool = False  # every call fails as a dropped connection does
    writes: int = 0
    holders: list[str | None] = field(default_factory=list)

    def _check(self) -> None:
        if self.down:
            raise aiohttp.ServerDisconnectedError()

    async def read_namespaced_lease(self, name: str, namespace: str, **_: Any) -> Response:
        self._check()
        if self.lease is None:
            return Response(404, b"{}", "Not Found")
        return Response(200, json.dumps(self.lease).encode())

    async def create_namespaced_lease(self, namespace: str, body: dict[str, Any]) -> None:
        self._check()
        if self.lease is not None:
            raise ApiException(status=409, reason="AlreadyExists")
        self._store(body)

    async def replace_namespaced_lease(self, name: str, namespace: str, body: dict[str, Any]) -> None:
        self._check()
        assert self.lease is not None
        if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        self._store(body)

    def _store(self, body: dict[str, Any]) -> None:
        self.version += 1
        self.writes += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        self.holders.append(self.lease["spec"].get("holderIdentity"))

    @property
    def holder(self) -> str | None:
        return None if self.lease is None else self.lease["spec"].get("holderIdentity")

    @property
    def renewed(self) -> float:
        assert self.lease is not None
        return parse_rfc3339(self.lease["spec"]["renewTime"])


def elector(leases: Leases, identity: str) -> LeaderElector:
    return LeaderElector(cast(Any, leases), "ns", "lease", identity, lease_s=2, renew_deadline_s=0.3, retry_s=0.05)


async def until(condition: Any, within_s: float = 3.0) -> None:
    async with asyncio.timeout(within_s):
        while not condition():
            await asyncio.sleep(0.01)


async def forever() -> None:
    await asyncio.Event().wait()


async def test_acquires_renews_and_releases_on_shutdown() -> None:
    leases = Leases()
    a = elector(leases, "a")
    task = asyncio.create_task(a.run(forever))
    await until(lambda: a.leading)
    first = leases.renewed
    await until(lambda: leases.renewed > first)  # renewing
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not a.leading
    assert leases.holder is None  # released: a standby need not wait out the lease
    assert leases.lease is not None
    assert leases.lease["spec"]["leaseDurationSeconds"] == 1


async def test_a_live_holder_is_respected_and_an_expired_one_taken_over() -> None:
    leases = Leases()
    a, b = elector(leases, "a"), elector(leases, "b")
    task_a = asyncio.create_task(a.run(forever))
    await until(lambda: a.leading)
    task_b = asyncio.create_task(b.run(forever))
    await asyncio.sleep(0.3)
    assert not b.leading
    assert leases.holder == "a"
    task_a.cancel()  # a dies; b takes over once the lease is released
    await asyncio.gather(task_a, return_exceptions=True)
    await until(lambda: b.leading)
    assert leases.holder == "b"
    assert leases.lease is not None
    assert leases.lease["spec"]["leaseTransitions"] >= 1
    task_b.cancel()
    await asyncio.gather(task_b, return_exceptions=True)


async def test_dropped_connections_step_down_then_the_loop_comes_back() -> None:
    """Regression: aiohttp's ServerDisconnectedError is neither OSError nor TimeoutError. It used to escape
    the loop, which then died silently: the Lease froze and no replica renewed tokens."""
    leases = Leases()
    a = elector(leases, "a")
    led = 0

    async def work() -> None:
        nonlocal led
        led += 1
        await forever()

    task = asyncio.create_task(a.run(work))
    await until(lambda: a.leading)
    leases.down = True
    await until(lambda: not a.leading)  # past the renew deadline: stop working at once
    await asyncio.sleep(0.2)
    assert not task.done()  # still trying, not dead
    leases.down = False
    await until(lambda: a.leading)
    before = leases.renewed
    await until(lambda: leases.renewed > before)
    assert led == 2
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_crash_of_the_work_ends_the_loop_with_its_error() -> None:
    leases = Leases()
    a = elector(leases, "a")

    async def crash() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await asyncio.wait_for(a.run(crash), 3)
    assert not a.leading
    assert leases.holder is None  # released for a healthy replica
