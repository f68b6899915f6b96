"""What a hostile client sends an HTTP server we run: each pattern as a coroutine over raw (TLS) sockets, so the
bytes on the wire are exactly the attack's, whatever a well-behaved client library would refuse to send.

Used by the tests that assert the webhook's (and the metrics servers') peak memory under each pattern
(tests/http/test_hostile_memory.py), and by ``make bench-hostile``, which drives the same patterns against our
webhook and the Go standard-library yardstick in one run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import ssl
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent.parent / "fixtures"
MB = 1024 * 1024
BOMB_INFLATED = 200 * MB  # what each compressed body inflates to
CHUNK = 64 * 1024


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    context: ssl.SSLContext | None  # None: plain HTTP
    path: str = "/mutate/pod"
    cap: int = 3 * MB  # the server's body cap
    extra_headers: str = ""

    def head(self, extra: str) -> bytes:
        return (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"{self.extra_headers}{extra}\r\n"
        ).encode()


Pattern = Callable[[Target], Coroutine[Any, Any, Counter[str]]]


async def _exchange(target: Target, send: Callable[[asyncio.StreamWriter], Awaitable[None]]) -> str:
    """Open a connection, let ``send`` write to it while the answer is read, as Go's HTTP client does (a server
    may answer before the request is all sent): the status ("413", "200"...), or what went wrong ("closed": the
    server closed it before answering; "reset" and "timeout")."""
    try:
        async with asyncio.timeout(30):
            reader, writer = await asyncio.open_connection(target.host, target.port, ssl=target.context)
            sending = asyncio.create_task(_quietly(send(writer)))
            try:
                line = await reader.readline()
            finally:
                sending.cancel()
                await asyncio.gather(sending, return_exceptions=True)
                writer.transport.abort()
    except TimeoutError:
        return "timeout"
    except (ConnectionError, ssl.SSLError, OSError):
        return "reset"
    parts = line.split()
    return parts[1].decode() if len(parts) > 1 else "closed"


async def _quietly(sending: Awaitable[None]) -> None:
    with contextlib.suppress(ConnectionError, ssl.SSLError):  # the server may answer and close before the end
        await sending


def client_context(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


async def exchange_body(target: Target, body: bytes) -> str:
    """POST ``body`` on a new connection; the answer's status."""
    head = target.head(f"Content-Length: {len(body)}\r\n")

    async def send(writer: asyncio.StreamWriter) -> None:
        writer.write(head + body)
        await writer.drain()

    return await _exchange(target, send)


def pod_review(size: int = 0) -> bytes:
    """The benchmark's pod review (a Flux source-controller pod), padded with an annotation to ``size`` bytes."""
    review = json.loads((FIXTURES / "reviews" / "pod_review.json").read_bytes())
    body = json.dumps(review).encode()
    if size > len(body):
        pad = size - len(body) - len(',"padding":""')
        review["request"]["object"]["metadata"].setdefault("annotations", {})["padding"] = "x" * pad
        body = json.dumps(review, separators=(",", ":")).encode()
    return body


async def _send_sized(writer: asyncio.StreamWriter, head: bytes, size: int) -> None:
    writer.write(head)
    block = b" " * CHUNK
    sent = 0
    while sent < size:
        part = block[: min(CHUNK, size - sent)]
        writer.write(part)
        sent += len(part)
        await writer.drain()


def oversize_bodies(count: int = 200) -> Pattern:
    """Bodies just over the cap, with their Content-Length, one after another."""

    async def run(target: Target) -> Counter[str]:
        size = target.cap + 1024
        head = target.head(f"Content-Length: {size}\r\n")
        seen: Counter[str] = Counter()
        for _ in range(count):
            seen[await _exchange(target, lambda w: _send_sized(w, head, size))] += 1
        return seen

    return run


@cache
def bomb(encoding: str) -> bytes:
    """A body that inflates to ``BOMB_INFLATED`` zero bytes: gzip or deflate (zlib), about 200 KB."""
    wbits = {"gzip": 31, "deflate": 15}[encoding]
    squash = zlib.compressobj(9, zlib.DEFLATED, wbits)
    zeros = bytes(MB)
    parts = [squash.compress(zeros) for _ in range(BOMB_INFLATED // MB)]
    parts.append(squash.flush())
    return b"".join(parts)


def compressed_bodies(encoding: str, count: int = 40) -> Pattern:
    """Small bodies with ``Content-Encoding`` that inflate to 200 MB each, one after another."""

    async def run(target: Target) -> Counter[str]:
        body = bomb(encoding)
        coded = dataclasses.replace(target, extra_headers=f"Content-Encoding: {encoding}\r\n")
        seen: Counter[str] = Counter()
        for _ in range(count):
            seen[await exchange_body(coded, body)] += 1
        return seen

    return run


def chunked_bodies(count: int = 200) -> Pattern:
    """Chunked bodies (no Content-Length) that go past the cap, one after another."""

    async def run(target: Target) -> Counter[str]:
        head = target.head("Transfer-Encoding: chunked\r\n")
        chunk = f"{CHUNK:x}\r\n".encode() + b" " * CHUNK + b"\r\n"

        async def send(writer: asyncio.StreamWriter) -> None:
            writer.write(head)
            for _ in range(target.cap // CHUNK + 2):
                writer.write(chunk)
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()

        seen: Counter[str] = Counter()
        for _ in range(count):
            seen[await _exchange(target, send)] += 1
        return seen

    return run


def huge_heads(connections: int = 32, headers: int = 2000, size: int = 8 * 1024) -> Pattern:
    """Many connections at once, each sending thousands of large request headers (16 MB of head each)."""

    async def run(target: Target) -> Counter[str]:
        line = b"X-Pad-%d: " + b"a" * (size - 16) + b"\r\n"

        async def send(writer: asyncio.StreamWriter) -> None:
            writer.write(f"POST {target.path} HTTP/1.1\r\nHost: {target.host}\r\n".encode())
            for i in range(headers):
                writer.write(line % i)
                await writer.drain()
            writer.write(b"Content-Length: 0\r\n\r\n")
            await writer.drain()

        return Counter(await asyncio.gather(*(_exchange(target, send) for _ in range(connections))))

    return run


def concurrent_valid(connections: int = 128) -> Pattern:
    """Many connections at once, each sending a valid review just under the cap."""

    async def run(target: Target) -> Counter[str]:
        body = pod_review(target.cap - 4096)
        return Counter(await asyncio.gather(*(exchange_body(target, body) for _ in range(connections))))

    return run


# name -> pattern, in the order of the README's table
PATTERNS: dict[str, Pattern] = {
    "oversize-content-length": oversize_bodies(),
    "gzip-bomb": compressed_bodies("gzip"),
    "deflate-bomb": compressed_bodies("deflate"),
    "oversize-chunked": chunked_bodies(),
    "huge-headers": huge_heads(),
    "concurrent-valid": concurrent_valid(),
}


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


def rss_mb(pid: int) -> float:
    """The process's resident memory now (VmRSS), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")
