"""The listening socket and what each connection may hold: bounded in time, in number and in size. Every port
either process serves (admission, metrics, health) runs on this.

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
- a connection idle for ``idle_timeout_s`` after its last answer is closed (the apiserver reconnects at once);
- a request head is counted as it arrives: past ``max_header_bytes`` the client gets a 431 and the connection is
  closed (aiohttp's parser checks each line, and the number of headers only once the head is complete: 2,000
  headers of 8 KB were held whole, 10 MB a connection);
- nothing is inflated (a ``Content-Encoding`` body reaches the handler as sent, and ``common.bodies`` refuses it),
  and a body the handler did not read is not read either: the connection is closed after the answer (no
  "lingering" read of what is left);
- the parser buffers at most ``2 x read_bufsize`` of a body that the handler has not asked for yet, then stops
  reading the socket (a connection waiting for the body budget costs that much).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

_HEAD_TOO_LARGE_BODY = b"request header fields too large\n"
HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_HEAD_TOO_LARGE_BODY), _HEAD_TOO_LARGE_BODY)
)


@dataclass(frozen=True)
class Limits:
    max_connections: int
    header_timeout_s: float  # TLS handshake, then the first request head (and, in the handler, a body)
    idle_timeout_s: float
    max_header_bytes: int
    read_bufsize: int = 16 * 1024
    socket_rcvbuf: int = 16 * 1024


# The metrics and health ports: scraped and probed by a handful of clients, never sent a body.
STATUS_LIMITS = Limits(max_connections=64, header_timeout_s=10, idle_timeout_s=60, max_header_bytes=16 * 1024)


_last_logged = [0.0]  # when a connection last logged a bad request (all connections together)


class HeadLimitedHandler(RequestHandler):
    """aiohttp's connection protocol, with each request head counted as it arrives."""

    def __init__(self, manager: web.Server, *, max_header_bytes: int, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._max_header_bytes = max_header_bytes
        self._head_bytes = 0
        self._body: StreamReader | None = None  # the newest request's payload: bytes after its head are body
        self._body_held = False

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp logs every malformed request at ERROR with its traceback (and parts of what the client sent):
        anyone who can reach the port could fill the logs. One line per second at most, the error's type only.
        (Anything else, an exception out of our own handlers, is logged as aiohttp does.)"""
        if not (args and str(args[0]).startswith("Error handling request")):
            super().log_exception(*args, **kw)
            return
        now = time.monotonic()
        if now - _last_logged[0] < 1.0:
            return
        _last_logged[0] = now
        error = kw.get("exc_info")
        log.warning("bad request", extra={"error": type(error).__name__ if error is not None else "unknown"})

    def read_body(self) -> None:
        """The handler is ready for the body: read it from the socket."""
        if self._body_held:
            self._body_held = False
            self.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self._body is None or self._body.is_eof():
            self._head_bytes += len(data)
        count = self._request_count
        super().data_received(data)
        if self._request_count != count:  # a head completed (what came after it in ``data`` was body)
            self._head_bytes = 0
            self._body = self._messages[-1][1] if self._messages else None
            if self._body is not None and not self._body.is_eof() and not self._reading_paused:
                # The rest of the body waits in the socket until the handler asks for it (``read_body``): a
                # connection waiting for the body budget holds what came with its head, nothing more.
                self.pause_reading()
                self._body_held = True
        elif self._head_bytes > self._max_header_bytes and self.transport is not None:
            if not self._request_in_progress:  # no answer is being written that this one would garble
                self.transport.write(HEAD_TOO_LARGE)
            self.force_close()  # the transport sends what it holds, then closes


def read_body(request: web.BaseRequest) -> None:
    """Let ``request``'s body be read from its connection (held unread until now, past what came with the head)."""
    protocol = request.protocol
    if isinstance(protocol, HeadLimitedHandler):
        protocol.read_body()


class BoundedServer(web.Server):
    """``web.Server`` that counts connections from their TCP accept, closes those that never send a request in
    time, and caps what each request may make it hold (see the module's docstring)."""

    def __init__(self, handler: Handler, limits: Limits, **kwargs: Any) -> None:
        async def tracked(request: web.BaseRequest) -> web.StreamResponse:
            protocol = request.protocol
            self.started(protocol)
            try:
                return await handler(request)
            finally:
                self.finished(protocol)

        super().__init__(
            tracked,
            keepalive_timeout=limits.idle_timeout_s,
            lingering_time=0,  # an unread body is not read: the connection is closed after the answer
            auto_decompress=False,
            read_bufsize=limits.read_bufsize,
            **kwargs,
        )
        self.limits = limits
        self.max_connections = limits.max_connections
        self.header_timeout_s = limits.header_timeout_s
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

    def __call__(self) -> RequestHandler:
        return HeadLimitedHandler(self, loop=self._loop, max_header_bytes=self.limits.max_header_bytes, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        if hasattr(transport, "set_read_buffer_limits"):
            # The TLS layer's buffer of received, not yet decrypted bytes (256 KiB by default) pauses the socket
            # at this size instead.
            transport.set_read_buffer_limits(high=self.limits.read_bufsize)
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
    handshake itself (``connect_accepted_socket``; none for plain HTTP) and hands the connection to aiohttp's
    request handler.

    (An earlier design accepted plain TCP, paused reading and upgraded with ``loop.start_tls``. uvloop still
    delivered a ClientHello that was already queued at accept to the plain protocol, where it was lost, and the
    handshake hung until its timeout: under CPU contention, dozens of connections at a time.)"""

    def __init__(self, server: BoundedServer, sock: socket.socket, context: ssl.SSLContext | None) -> None:
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
            if self._context is None:
                await loop.connect_accepted_socket(lambda: handler, pending.conn)
            else:
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


def bind(host: str, port: int, rcvbuf: int) -> socket.socket:
    """The listening socket for host:port (IPv4, or IPv6 when the host has a colon; ``::`` is dual-stack).

    Accepted connections inherit its receive buffer size, which bounds what one read of a socket can bring:
    the TLS layer reads into a 256 KiB buffer of its own, which a full kernel buffer would fill for every
    connection waiting on the body budget."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    dualstack = family == socket.AF_INET6 and host == "::" and socket.has_dualstack_ipv6()
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before listen(): the window is negotiated
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dualstack else 1)
        sock.bind((host, port))
        sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


async def listen(server: BoundedServer, host: str, port: int, context: ssl.SSLContext | None) -> Listener:
    """Serve ``server`` on host:port (over TLS with ``context``), every connection counted from its accept."""
    return Listener(server, bind(host, port, server.limits.socket_rcvbuf), context)
