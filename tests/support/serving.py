"""Serve an aiohttp app on a loopback port for a test: one place for the fakes and the git server."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web


@asynccontextmanager
async def serving(
    app: web.Application, ssl_context: ssl.SSLContext | None = None, host: str = "127.0.0.1"
) -> AsyncIterator[str]:
    """Yield the base URL (https when ``ssl_context`` is given) of ``app`` on a free port of ``host`` (loopback,
    or the host's end of a test node's veth)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, 0, ssl_context=ssl_context)
        await site.start()
        port = runner.addresses[0][1]  # the kernel picked it: no window for another process to take it
        yield f"{'https' if ssl_context else 'http'}://{host}:{port}"
    finally:
        await runner.cleanup()
