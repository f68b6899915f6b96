"""flux-passwordless-refresher: the token refresher process."""

from __future__ import annotations

import asyncio
import sys

from common import logs
from refresher import app, config


def main(argv: list[str] | None = None) -> int:
    cfg = config.from_args(argv)
    logs.setup(cfg.log_level)
    asyncio.run(app.run(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
