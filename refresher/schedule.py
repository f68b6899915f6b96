"""When to renew a token, and when to retry after a failure. Pure (the random source is passed in)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from refresher.errors import MintError, PermanentError, TemporaryError

RENEW_FRACTION = 0.8
MIN_FRACTION = 0.1  # never renew sooner than this share of the lifetime (a consumer window past the
#                     lifetime cannot be met by renewing in a loop)
JITTER_FRACTION = 0.05
MAX_JITTER_S = 120.0


def renew_at(
    issued_at: float, expires_at: float, consumer_window_s: float = 0.0, rng: random.Random | None = None
) -> float:
    """80% into the token's life, or earlier so that ``consumer_window_s`` remains before expiry, minus
    jitter (so tokens minted together do not renew together)."""
    lifetime = max(expires_at - issued_at, 0.0)
    due = min(issued_at + RENEW_FRACTION * lifetime, expires_at - consumer_window_s)
    due = max(due, issued_at + MIN_FRACTION * lifetime)
    jitter = (rng or random).uniform(0, min(JITTER_FRACTION * lifetime, MAX_JITTER_S))
    return due - jitter


@dataclass(frozen=True)
class Backoff:
    base_s: float = 1.0
    cap_s: float = 300.0

    def retry_at(self, now: float, attempt: int, error: MintError, rng: random.Random | None = None) -> float | None:
        """None for a permanent error (wait until the inputs change)."""
        if isinstance(error, PermanentError):
            return None
        delay = min(self.cap_s, self.base_s * 2 ** max(attempt - 1, 0))
        delay *= 0.5 + (rng or random).random() / 2  # "equal jitter": half fixed, half random
        if isinstance(error, TemporaryError) and error.retry_after is not None:
            delay = max(delay, error.retry_after)
        return float(now + delay)
