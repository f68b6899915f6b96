"""Flag helpers both processes share: a ``FLUX_PASSWORDLESS_*`` environment default for every flag, comma lists,
and ``--listen`` checked once."""

from __future__ import annotations

import argparse
import os

ENV_PREFIX = "FLUX_PASSWORDLESS_"


def env(flag: str, default: str) -> str:
    """The default of ``--flag``: ``FLUX_PASSWORDLESS_FLAG`` from the environment, else ``default``."""
    return os.environ.get(ENV_PREFIX + flag.upper().replace("-", "_"), default)


def csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def listen(parser: argparse.ArgumentParser, value: str, example: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` too) or a parser error naming the flag, the value and an example."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        parser.error(f'--listen: Invalid value: "{value}": use host:port, e.g. {example}')
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - a server's default is every interface
