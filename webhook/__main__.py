"""flux-passwordless-webhook: the mutating admission webhook process."""

from __future__ import annotations

import sys

from common import logs, process
from webhook import config, server


def main(argv: list[str] | None = None) -> int:
    cfg = config.from_args(argv)
    logs.setup(cfg.log_level)
    process.run(server.run(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
