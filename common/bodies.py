"""Request bodies: refused before they are read when they cannot be answered, and held within a budget.

- ``Content-Encoding`` other than ``identity``: 415 before a byte is read (the apiserver sends none; a 200 KB
  gzip body inflates to 200 MB).
- ``Content-Length`` over the cap: 413 before a byte is read. A chunked body is counted as it arrives and cut
  at the cap (413). Either way the connection is closed after the answer (``common.connections``: no lingering
  read), and the refusal holds no buffer: it is returned, never raised from where a buffer lives (aiohttp's own
  ``read()`` raised its 413 from a frame holding the partial body, and the exception's traceback kept each 3 MB
  buffer alive in a reference cycle until the next full garbage collection).
- A budget for all bodies in flight: each request reserves its ``Content-Length`` (a chunked one the whole cap)
  before its body is read, and keeps it until its answer is built, so the body, its decoded form and the answer
  are covered. While the budget is taken a new body waits, its connection not read (the parser stops reading the
  socket past a small buffer), up to the body timeout; then it gets a 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from common.connections import read_body

TEXT_CLOSE = CIMultiDictProxy(CIMultiDict({"Content-Type": "text/plain; charset=utf-8", "Connection": "close"}))


@dataclass(frozen=True, slots=True)
class Refusal:
    """A body that will not be read or answered; ``why`` is a closed set (it labels a metric)."""

    status: int
    why: str  # "encoding", "too-large", "busy", "timeout", "incomplete"
    message: str

    def response(self) -> web.Response:
        headers = (
            TEXT_CLOSE if self.status != 503 else CIMultiDictProxy(CIMultiDict({**TEXT_CLOSE, "Retry-After": "1"}))
        )
        response = web.Response(status=self.status, body=f"{self.message}\n".encode(), headers=headers)
        response.force_close()
        return response


class Budget:
    """Bytes of request bodies held at once, across all connections; reservations are served first come, first
    served (a large body is not starved by a stream of small ones)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.free = total
        self._waiting: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    async def take(self, size: int) -> None:
        """Reserve ``size`` bytes (at most ``total``), waiting for them if need be; cancellable."""
        size = min(size, self.total)
        if not self._waiting and self.free >= size:
            self.free -= size
            return
        waiter = asyncio.get_running_loop().create_future()
        entry = (size, waiter)
        self._waiting.append(entry)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.give(size)  # granted just as we gave up: hand it on
            else:
                self._waiting.remove(entry)
                self._wake()  # the ones behind us may fit now
            raise

    def give(self, size: int) -> None:
        self.free += min(size, self.total)
        self._wake()

    def _wake(self) -> None:
        while self._waiting and self._waiting[0][0] <= self.free:
            size, waiter = self._waiting.popleft()
            self.free -= size
            waiter.set_result(None)


@dataclass(slots=True)
class Body:
    """A body read in full, and the share of the budget it holds until ``Bodies.release``."""

    data: bytearray
    reserved: int


class Bodies:
    """Reads request bodies for handlers that answer from the whole body (the admission endpoints)."""

    def __init__(self, cap: int, budget: int, timeout_s: float) -> None:
        self.cap = cap
        self.budget = Budget(budget)
        self.timeout_s = timeout_s

    async def receive(self, request: web.BaseRequest) -> Body | Refusal:
        encoding = request.headers.get("Content-Encoding")
        if encoding is not None and encoding.strip().lower() != "identity":
            return Refusal(415, "encoding", "request bodies are not accepted with a Content-Encoding")
        length = request.content_length
        if length is not None and length > self.cap:
            return Refusal(413, "too-large", f"request body over {self.cap} bytes")
        reserve = length if length is not None else self.cap
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.budget.take(reserve)
        except TimeoutError:
            return Refusal(503, "busy", f"too many request bodies in flight; waited {self.timeout_s:g}s")
        data = None
        try:
            read_body(request)
            data = await self._read(request, length)
        finally:
            if not isinstance(data, bytearray):  # refused, or cancelled (the client went away)
                self.budget.give(reserve)
        if isinstance(data, Refusal):
            return data
        return Body(data, reserve)

    def release(self, body: Body) -> None:
        self.budget.give(body.reserved)
        body.reserved = 0

    async def _read(self, request: web.BaseRequest, length: int | None) -> bytearray | Refusal:
        content = request.content
        data = bytearray(length) if length is not None else bytearray()  # one copy, filled in place
        filled = 0
        try:
            async with asyncio.timeout(None if content.is_eof() else self.timeout_s):
                while True:
                    chunk = await content.readany()
                    if not chunk:
                        break
                    end = filled + len(chunk)
                    if end > (length if length is not None else self.cap):
                        return Refusal(413, "too-large", f"request body over {self.cap} bytes")
                    if length is not None:
                        data[filled:end] = chunk
                    else:
                        data += chunk
                    filled = end
        except TimeoutError:
            return Refusal(408, "timeout", f"request body not received within {self.timeout_s:g}s")
        except ConnectionError:  # the client went away mid-body: nobody will read the answer
            return Refusal(400, "incomplete", "connection lost before the request body was complete")
        except BaseException:
            data = bytearray()  # the exception's traceback keeps this frame: it must not keep the buffer too
            raise
        if length is not None and filled != length:  # the client closed early; aiohttp's parser says so first
            return Refusal(400, "incomplete", "request body shorter than its Content-Length")
        return data
