"""Process lifecycle shared by both processes: serve until SIGTERM or SIGINT, then shut down cleanly."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from typing import Any


async def run_until_signalled(serve: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
    """Run ``serve(stop)``; SIGTERM (Kubernetes stopping the pod) or SIGINT sets ``stop``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(stop)


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` to its end on uvloop (libuv, and TLS in C: the refresher's Secret writes and the webhook's
    handshakes cost a fraction of the pure-Python asyncio ones), or on asyncio where uvloop is not installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; stay runnable without it
        asyncio.run(main)
    else:
        uvloop.run(main)
