"""The listening socket and what each connection may hold: bounded in time and in number.

An admission webhook listens on a port anything in the cluster network can reach, and aiohttp's defaults
keep a connection for an hour and any number of them. Here every connection is counted from the moment it is
accepted, before any TLS work (one in its TLS handshake holds about 70 KB, mostly uvloop's and OpenSSL's
buffers: the cap is what bounds memory):

- at most ``max_connections`` at a time. Past it, room is made by closing the oldest connection that is
  still in its TLS handshake (when those hold more than half the room) or else the oldest idle one; a flood
  of idle or silent connections churns among itself, requests in flight are never cut, and only if every
  connection is busy is the newcomer turned away;
- the TLS handshake, and then the first request's headers, must each come within ``header_timeout_s`` (a
  client that connects and sends nothing, or one byte at a time, is closed); a body too (checked in the
  request handler);
- a connection idle for ``idle_timeout_s`` after its last answer is closed (the apiserver reconnects at once).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)


class BoundedServer(web.Server):
    """``web.Server`` that counts connections from their TCP accept, and closes those that never send a
    request in time."""

    def __init__(
        self, handler: Any, *, max_connections: int, header_timeout_s: float, idle_timeout_s: float, **kwargs: Any
    ) -> None:
        super().__init__(handler, keepalive_timeout=idle_timeout_s, **kwargs)
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self.handshaking: dict[_Handshake, asyncio.Transport] = {}  # oldest first
        self.busy: set[RequestHandler] = set()  # connections with a request in flight
        self._served: set[RequestHandler] = set()  # connections that got a first request
        self.shed = 0  # connections closed to make room

    def admit(self) -> bool:
        """Room for one more accepted connection? Makes it if it can."""
        if len(self.handshaking) + len(self._connections) < self.max_connections:
            return True
        if len(self.handshaking) * 2 >= self.max_connections:
            victim = next(iter(self.handshaking))
            self.handshaking.pop(victim).abort()
            self.shed += 1
            return True
        for old in self._connections:  # oldest first
            if old not in self.busy:
                self.shed += 1
                old.force_close()
                self._connections.pop(old, None)  # its connection_lost comes later; the room is free now
                return True
        return False

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        asyncio.get_running_loop().call_later(self.header_timeout_s, self._first_request_due, handler)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        self._served.discard(handler)
        self.busy.discard(handler)
        super().connection_lost(handler, exc)

    def _first_request_due(self, handler: RequestHandler) -> None:
        if handler in self._connections and handler not in self._served and handler not in self.busy:
            handler.force_close()

    def started(self, handler: RequestHandler) -> None:
        self._served.add(handler)
        self.busy.add(handler)

    def finished(self, handler: RequestHandler) -> None:
        self.busy.discard(handler)


class _Handshake(asyncio.Protocol):
    """Every accepted connection's first protocol: counted and admitted (or refused) before any TLS work, then
    upgraded to TLS and handed to aiohttp's request handler."""

    def __init__(self, server: BoundedServer, context: ssl.SSLContext) -> None:
        self._server = server
        self._context = context
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses
        if not self._server.admit():
            transport.abort()
            return
        transport.pause_reading()  # the ClientHello waits for the TLS layer
        self._server.handshaking[self] = transport
        self._task = asyncio.get_running_loop().create_task(self._upgrade(transport))

    async def _upgrade(self, transport: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        # The handler must be in place before the handshake ends: the first request may follow in the same read.
        handler = self._server()
        try:
            tls = await loop.start_tls(
                transport,
                handler,
                self._context,
                server_side=True,
                ssl_handshake_timeout=self._server.header_timeout_s,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError, RuntimeError):
            transport.abort()  # a failed or abandoned handshake: nothing to tell anyone
            return
        finally:
            self._server.handshaking.pop(self, None)
        if tls is None or tls.is_closing():
            return
        handler.connection_made(tls)

    def connection_lost(self, exc: Exception | None) -> None:
        # Only reached while still ours (before the TLS layer took over): the handshake will not finish.
        self._server.handshaking.pop(self, None)
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def data_received(self, data: bytes) -> None:  # pragma: no cover - reading is paused until TLS takes over
        return None


async def listen(server: BoundedServer, host: str, port: int, context: ssl.SSLContext) -> asyncio.AbstractServer:
    """Serve ``server`` over TLS on host:port, every connection counted from its accept."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _Handshake(server, context), host, port, backlog=1024, reuse_address=True)
