"""The HTTP servers both processes run, on aiohttp's low-level ``web.Server`` with an exact route table (the
Application's router and signals cost a quarter of the webhook's per-request budget) and the connection limits
of ``common.connections``: the webhook's admission port (TLS), and the plain-HTTP metrics and health ports.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from common.connections import BoundedServer, Handler, Limits, Listener, listen

Routes = Mapping[tuple[str, str], Handler]  # (method, exact path) -> handler

# Ready-made header maps: Response copies them as they are, where content_type=... would be parsed each time.
JSON_HEADERS = CIMultiDictProxy(CIMultiDict({"Content-Type": "application/json"}))
TEXT_HEADERS = CIMultiDictProxy(CIMultiDict({"Content-Type": "text/plain; charset=utf-8"}))


def text(body: str, status: int = 200, headers: Mapping[str, str] = TEXT_HEADERS) -> web.Response:
    return web.Response(status=status, body=body.encode(), headers=headers)


def dispatcher(routes: Routes) -> Handler:
    """Exact-path dispatch: 404 for an unknown path, 405 (with ``Allow``) for a wrong method."""
    table = dict(routes)
    allowed: dict[str, list[str]] = {}
    for method, path in table:
        allowed.setdefault(path, []).append(method)

    async def dispatch(request: web.BaseRequest) -> web.StreamResponse:
        # The raw path, not request.path: the apiserver adds "?timeout=5s", and building a URL object to drop it
        # costs more than the whole route lookup. Paths are compared exactly, as the apiserver sends them.
        path = request.raw_path.partition("?")[0]
        handler = table.get((request.method, path))
        if handler is not None:
            return await handler(request)
        if path in allowed:
            methods = ", ".join(sorted(allowed[path]))
            return text(
                f"method {request.method} not allowed; use {methods}\n", 405, {**TEXT_HEADERS, "Allow": methods}
            )
        return text(f"no such path: {path}\n", 404)

    return dispatch


async def metrics(_: web.BaseRequest) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@dataclass
class Running:
    server: BoundedServer
    listener: Listener
    runner: web.ServerRunner

    async def close(self) -> None:
        """No new connections; those open finish their request."""
        self.listener.close()
        await self.runner.cleanup()


async def start(
    routes: Routes,
    host: str,
    port: int,
    limits: Limits,
    context: ssl.SSLContext | None = None,
) -> Running:
    """Serve ``routes`` on host:port (over TLS with ``context``) within ``limits``."""
    server = BoundedServer(dispatcher(routes), limits, access_log=None)
    runner = web.ServerRunner(server, handle_signals=False)
    await runner.setup()
    return Running(server, await listen(server, host, port, context), runner)
