"""flux-passwordless-refresher: the token refresher process."""

from __future__ import annotations

import sys

from common import logs, process
from refresher import app, config


def main(argv: list[str] | None = None) -> int:
    cfg = config.from_args(argv)
    logs.setup(cfg.log_level)
    process.run(app.run(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
