"""Kubernetes timestamps: one formatter and one parser for every place that writes or reads them.

Both are cached: a token's expiry is written into, and read back from, every Secret that holds the token (100
Secrets a token is common), and formatting and parsing were 3% of the refresher's CPU while filling 10,000.
"""

from __future__ import annotations

import datetime as dt
import functools


def rfc3339(epoch: float, micro: bool = False) -> str:
    """``2026-11-23T21:09:00Z`` (metav1.Time), or with microseconds (metav1.MicroTime, as Leases use)."""
    if micro:
        return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return _seconds(int(epoch))


@functools.lru_cache(maxsize=4096)
def _seconds(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.lru_cache(maxsize=4096)
def parse_rfc3339(value: str | None) -> float:
    """Epoch seconds of an RFC 3339 time; 0.0 when absent. Raises ValueError when malformed."""
    if not value:
        return 0.0
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
