"""What a hostile client can make the webhook hold: each pattern of ``tests.support.hostile`` against a fresh
``python -m webhook`` (uvloop, default flags, as users run it), its peak resident memory (VmHWM) asserted with
the shipped 256 Mi limit in mind, then a valid review answered within 1 s. Before these limits existed the same
patterns peaked at 216-598 MB (see the README's figures); ``make bench-hostile`` prints ours beside the Go
yardstick's."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from common import httpserver
from common.connections import STATUS_LIMITS
from tests.support import hostile
from tests.support.controlplane import free_port
from tests.support.webhook import running_webhook, webhook_process

CONTAINER_LIMIT_MB = 256  # manifests/base/webhook-deployment.yaml
REFUSALS_BOUND_MB = 100  # baseline ~48 MB; refused requests may hold a few connections' buffers, never a body
CONCURRENT_BOUND_MB = 160  # baseline + 128 waiting connections (~0.12 MB each) + the 48 MiB body budget in use

CASES = [
    ("oversize-content-length", "413", REFUSALS_BOUND_MB),
    ("gzip-bomb", "415", REFUSALS_BOUND_MB),
    ("deflate-bomb", "415", REFUSALS_BOUND_MB),
    ("oversize-chunked", "413", REFUSALS_BOUND_MB),
    ("huge-headers", "431", REFUSALS_BOUND_MB),
    ("concurrent-valid", "200", CONCURRENT_BOUND_MB),
]


@pytest.mark.parametrize(("pattern", "answer", "bound_mb"), CASES, ids=[c[0] for c in CASES])
async def test_peak_memory_under_a_hostile_client(tmp_path: Path, pattern: str, answer: str, bound_mb: int) -> None:
    assert bound_mb < CONTAINER_LIMIT_MB * 0.65
    with webhook_process(tmp_path) as (proc, port, context):
        target = hostile.Target("127.0.0.1", port, context)
        base = hostile.rss_mb(proc.pid)
        answers = await hostile.PATTERNS[pattern](target)
        peak = hostile.peak_rss_mb(proc.pid)
        started = time.monotonic()
        after = await hostile.exchange_body(target, hostile.pod_review())
        took = time.monotonic() - started
        print(f"\n{pattern}: {dict(answers)}; RSS {base:.0f} MB, peak {peak:.0f} MB; a review then took {took:.3f}s")
        assert set(answers) == {answer}, answers
        assert peak < bound_mb, f"peak {peak:.0f} MB"
        assert after == "200"
        assert took < 1


async def test_a_refused_body_leaves_nothing_behind(tmp_path: Path) -> None:
    """Regression: aiohttp's ``read()`` raised its 413 from the frame that held the partial body, and the
    exception's traceback kept each 3 MB buffer alive in a reference cycle until a full collection (200 refusals
    left ~170 MB resident). With the collector off, what a refusal allocates must be freed by reference counting
    alone."""
    async with running_webhook(tmp_path) as hook:
        target = hostile.Target("127.0.0.1", hook.port, hook.client_ssl())
        await hostile.oversize_bodies(2)(target)  # warm: first-use allocations
        await hostile.chunked_bodies(2)(target)
        gc.collect()
        gc.disable()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            seen = await hostile.oversize_bodies(10)(target) + await hostile.chunked_bodies(10)(target)
            await asyncio.sleep(0.2)  # closed connections' callbacks run
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
            gc.enable()
    assert seen == Counter({"413": 20})
    assert held < 1024 * 1024, f"{held / 1e6:.1f} MB still referenced after 20 refused bodies"


async def test_a_valid_body_that_cannot_get_the_budget_in_time_is_a_503(tmp_path: Path) -> None:
    """A body waits, unread, for its share of the budget up to the body timeout, then gets 503 + Retry-After
    (the apiserver reports the call as failed and applies the failurePolicy). Here two slow clients each hold
    the whole budget in turn for a body timeout (then get their 408), so a review queued behind them times out."""
    async with running_webhook(tmp_path, "--header-timeout=1", "--body-budget-bytes=3145728") as hook:
        target = hostile.Target("127.0.0.1", hook.port, hook.client_ssl())

        async def slow_holder() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            reader, writer = await asyncio.open_connection("127.0.0.1", hook.port, ssl=target.context)
            writer.write(target.head(f"Content-Length: {3 * hostile.MB}\r\n") + b"{")  # never finished
            await writer.drain()
            await asyncio.sleep(0.05)
            return reader, writer

        holders = [await slow_holder(), await slow_holder()]
        started = time.monotonic()
        status = await hostile.exchange_body(target, hostile.pod_review())
        waited = time.monotonic() - started
        assert status == "503"
        assert 0.9 < waited < 1.5
        for reader, writer in holders:
            async with asyncio.timeout(3):
                assert (await reader.readline()).startswith(b"HTTP/1.1 408")
            writer.transport.abort()
        assert await hostile.exchange_body(target, hostile.pod_review()) == "200"  # the budget is free again


@pytest.fixture
async def status_port() -> AsyncIterator[hostile.Target]:
    async def ok(_: web.BaseRequest) -> web.Response:
        return httpserver.text("ok\n")

    port = free_port()
    routes = {("GET", "/healthz"): ok, ("GET", "/metrics"): httpserver.metrics}
    running = await httpserver.start(routes, "127.0.0.1", port, STATUS_LIMITS)
    try:
        yield hostile.Target("127.0.0.1", port, None, path="/metrics")
    finally:
        await running.close()


async def test_the_status_ports_cap_request_heads(status_port: hostile.Target) -> None:
    """The metrics and health ports (both processes) run on the same limits: a huge head is a 431."""
    assert await hostile.huge_heads(connections=4)(status_port) == Counter({"431": 4})
    reader, writer = await asyncio.open_connection(status_port.host, status_port.port)
    pad = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 4000) for i in range(STATUS_LIMITS.max_header_bytes // 4000 + 1))
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + pad)
    async with asyncio.timeout(2):
        answer = await reader.read()  # the whole answer, then the server's close
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ")
    assert b"Content-Length: %d" % len(body) in head
    assert body == b"request header fields too large\n"
    writer.transport.abort()


async def test_the_status_ports_never_read_a_body(status_port: hostile.Target) -> None:
    """A body sent to a GET-only port is not read: the connection is closed at once (with unread bytes in it, the
    kernel resets it rather than wait for a 500 MB body to be drained)."""
    reader, writer = await asyncio.open_connection(status_port.host, status_port.port)
    writer.write(status_port.head(f"Content-Length: {500 * hostile.MB}\r\n") + b"x" * 65536)
    started = time.monotonic()
    with contextlib.suppress(ConnectionResetError):
        async with asyncio.timeout(2):
            while await reader.read(65536):  # to EOF or a reset: the server closed it
                writer.write(b"x" * 65536)
    assert time.monotonic() - started < 1
    writer.transport.abort()


async def test_the_budget_serves_in_order_and_gives_back_what_a_cancelled_waiter_held() -> None:
    from common.bodies import Budget

    budget = Budget(10)
    await budget.take(8)
    big = asyncio.create_task(budget.take(6))
    small = asyncio.create_task(budget.take(2))  # fits now, but waits behind the larger one: first come
    await asyncio.sleep(0)
    assert not big.done()
    assert not small.done()
    budget.give(8)
    await asyncio.sleep(0)
    assert big.done()
    assert small.done()
    assert budget.free == 2
    waiter = asyncio.create_task(budget.take(5))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    budget.give(6)
    budget.give(2)
    assert budget.free == 10
    await budget.take(50)  # more than the whole budget is capped at it, so it can still be served
    assert budget.free == 0


async def test_a_webhook_started_with_a_budget_below_the_body_cap_is_refused() -> None:
    from webhook import config

    with pytest.raises(SystemExit):
        config.from_args(["--body-budget-bytes=1000000"])
    with pytest.raises(SystemExit):
        config.from_args(["--max-header-bytes=100"])


def test_hostile_http_fixture_is_realistic() -> None:
    """The padded review is what the webhook would be sent: valid JSON of the requested size."""
    import json

    body = hostile.pod_review(100_000)
    assert 99_000 < len(body) <= 100_000
    assert json.loads(body)["request"]["kind"]["kind"] == "Pod"


async def test_malformed_requests_cannot_flood_the_logs(
    status_port: hostile.Target, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp logged each malformed request at ERROR with its traceback: one line a second at most now."""
    for _ in range(50):
        reader, writer = await asyncio.open_connection(status_port.host, status_port.port)
        writer.write(b"GET /metrics HTTP/1.1\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n")
        async with asyncio.timeout(2):
            assert (await reader.readline()).startswith(b"HTTP/1.0 400")
        writer.transport.abort()
    bad = [r for r in caplog.records if r.name.startswith(("aiohttp", "common.connections"))]
    assert 1 <= len(bad) <= 2, [r.getMessage() for r in bad]
    assert all(r.levelname == "WARNING" and r.exc_info is None for r in bad)
