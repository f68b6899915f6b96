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
import errno
import logging
import socket
import ssl
from typing import Any

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
        self.handshaking: dict[_Pending, None] = {}  # accepted, in the TLS handshake (an ordered set: oldest first)
        self.busy: set[RequestHandler] = set()  # connections with a request in flight
        self._served: set[RequestHandler] = set()  # connections that got a first request
        self.shed = 0  # connections closed to make room

    def admit(self) -> bool:
        """Room for one more accepted connection? Makes it if it can."""
        if len(self.handshaking) + len(self._connections) < self.max_connections:
            return True
        if len(self.handshaking) * 2 >= self.max_connections:
            victim = next(iter(self.handshaking))
            del self.handshaking[victim]
            victim.abort()
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


class Listener:
    """The listening socket and its accept loop, ours so that every connection is counted and admitted (or
    turned away) the moment it is accepted, before the loop reads a byte of it; the loop then does the TLS
    handshake itself (``connect_accepted_socket``) and hands the connection to aiohttp's request handler.

    (An earlier design accepted plain TCP, paused reading and upgraded with ``loop.start_tls``. uvloop still
    delivered a ClientHello that was already queued at accept to the plain protocol, where it was lost, and the
    handshake hung until its timeout: under CPU contention, dozens of connections at a time.)"""

    def __init__(self, server: BoundedServer, sock: socket.socket, context: ssl.SSLContext) -> None:
        self._server = server
        self._sock = sock
        self._context = context
        self._task = asyncio.get_running_loop().create_task(self._accept_forever(), name="webhook-accept")

    async def _accept_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(self._sock)
            except OSError as err:
                if err.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors or memory: what is queued waits in the backlog; try again shortly.
                    log.warning("accept failed", extra={"errno": errno.errorcode.get(err.errno or 0, "?")})
                    await asyncio.sleep(0.1)
                continue  # ECONNABORTED and the like: that one client is gone
            self._take(conn)
            while True:  # a burst: take what else is queued without a loop round-trip each
                try:
                    conn, _ = self._sock.accept()
                except OSError:  # BlockingIOError: none left (anything else: the next sock_accept says)
                    break
                self._take(conn)

    def _take(self, conn: socket.socket) -> None:
        if not self._server.admit():
            conn.close()  # every connection busy: turned away
            return
        conn.setblocking(False)
        pending = _Pending(conn)
        self._server.handshaking[pending] = None
        pending.task = asyncio.get_running_loop().create_task(self._handshake(pending))

    async def _handshake(self, pending: _Pending) -> None:
        loop = asyncio.get_running_loop()
        handler = self._server()  # its connection_made comes from the TLS layer once the handshake is done
        try:
            pending.handed = True
            await loop.connect_accepted_socket(
                lambda: handler,
                pending.conn,
                ssl=self._context,
                ssl_handshake_timeout=self._server.header_timeout_s,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError, RuntimeError):
            return  # a failed or abandoned handshake (the loop has closed it): nothing to tell anyone
        finally:
            self._server.handshaking.pop(pending, None)

    def close(self) -> None:
        """No new connections (those open are the request handler's to finish)."""
        self._task.cancel()
        self._sock.close()
        for pending in list(self._server.handshaking):
            pending.abort()
        self._server.handshaking.clear()


class _Pending:
    """An accepted connection in its TLS handshake."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.task: asyncio.Task[None] | None = None
        self.handed = False  # the loop owns the socket from here (and closes it when the task is cancelled)

    def abort(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if not self.handed:
            self.conn.close()


def bind(host: str, port: int) -> socket.socket:
    """The listening socket for host:port (IPv4, or IPv6 when the host has a colon; ``::`` is dual-stack)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    dualstack = family == socket.AF_INET6 and host == "::" and socket.has_dualstack_ipv6()
    sock = socket.create_server((host, port), family=family, backlog=1024, dualstack_ipv6=dualstack)
    sock.setblocking(False)
    return sock


async def listen(server: BoundedServer, host: str, port: int, context: ssl.SSLContext) -> Listener:
    """Serve ``server`` over TLS on host:port, every connection counted from its accept."""
    return Listener(server, bind(host, port), context)
