"""Every refresher failure is one of two kinds, as kopf and source-controller split them.

- ``PermanentError``: retrying cannot help (a bad key, an unknown installation): wait until the inputs
  change. - ``TemporaryError``: retry with capped exponential backoff, no sooner than ``retry_after``.

Messages name the Secret key or field to fix and never carry a token, key or Secret value.
"""

from __future__ import annotations


class MintError(Exception):
    """Base: ``reason`` is a short CamelCase word for Events and metric labels."""

    reason = "MintFailed"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        if reason:
            self.reason = reason


class PermanentError(MintError):
    reason = "InvalidCredentials"


class TemporaryError(MintError):
    reason = "Unavailable"

    def __init__(self, message: str, reason: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, reason)
        self.retry_after = retry_after
