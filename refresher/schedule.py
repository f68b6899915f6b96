"""When to renew a token, and when to retry after a failure: the token state machine. Pure (the clock's
reading and the random source are passed in)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from common.backoff import Backoff
from refresher.errors import MintError, PermanentError, TemporaryError
from refresher.providers import Token

RENEW_FRACTION = 0.8
MIN_FRACTION = 0.1  # never renew sooner than this share of the lifetime (a consumer window past the
#                     lifetime cannot be met by renewing in a loop)
JITTER_FRACTION = 0.05
MAX_JITTER_S = 120.0
MINT_BACKOFF = Backoff(base_s=1.0, cap_s=300.0)


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


def retry_at(
    now: float, attempt: int, error: MintError, rng: random.Random | None = None, backoff: Backoff = MINT_BACKOFF
) -> float | None:
    """When to try again after ``attempt`` failures in a row; None for a permanent error (wait until the
    inputs change). Never sooner than the provider's ``Retry-After`` / rate-limit reset."""
    if isinstance(error, PermanentError):
        return None
    delay = backoff.delay(attempt, rng)
    if isinstance(error, TemporaryError) and error.retry_after is not None:
        delay = max(delay, error.retry_after)
    return float(now + delay)


@dataclass
class TokenState:
    """One planned token's life: the token in use (kept through failures until it expires), when to renew it,
    and the failure streak that decides when to try again."""

    token: Token | None = None
    renew_at: float = 0.0
    failures: int = 0
    retry_at: float | None = 0.0  # None: permanent failure, wait for the inputs to change
    error: MintError | None = None

    def due(self, now: float) -> bool:
        if self.retry_at is None:
            return False  # permanent: a changed credential is a new key, with a new state
        if self.error is not None:
            return now >= self.retry_at
        return self.token is None or now >= self.renew_at

    def minted(self, token: Token, window_s: float, rng: random.Random | None = None) -> None:
        self.token = token
        self.failures = 0
        self.error = None
        self.retry_at = 0.0
        self.renew_at = renew_at(token.issued_at, token.expires_at, window_s, rng)

    def failed(self, error: MintError, now: float, rng: random.Random | None = None) -> None:
        self.failures += 1
        self.error = error
        self.retry_at = retry_at(now, self.failures, error, rng)

    def usable(self, now: float) -> Token | None:
        """The token to write, if one is still valid (an expired token is never written: never blank a Secret
        with something that cannot work, never overwrite a good one with nothing)."""
        if self.token is not None and self.token.expires_at > now:
            return self.token
        return None

    def next_due(self) -> float | None:
        """When this token needs the loop again (None: not until something changes)."""
        if self.error is not None:
            return self.retry_at
        return self.renew_at if self.token is not None else None
