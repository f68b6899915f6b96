"""flux-passwordless-webhook: the mutating admission webhook process."""

from __future__ import annotations

import asyncio
import sys

from common import logs
from webhook import config, server


def main(argv: list[str] | None = None) -> int:
    cfg = config.from_args(argv)
    logs.setup(cfg.log_level)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; stay runnable without it
        asyncio.run(server.run(cfg))
    else:
        uvloop.run(server.run(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
