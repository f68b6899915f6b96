"""Capped exponential backoff with "equal jitter" (half fixed, half random), the one retry delay every loop
uses: informers relisting, the refresher's pass when the apiserver is away, token mints after a failure."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    base_s: float = 1.0
    cap_s: float = 300.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before try ``attempt + 1`` (``attempt`` >= 1 failures so far)."""
        delay = min(self.cap_s, self.base_s * 2.0 ** max(attempt - 1, 0))
        return delay * (0.5 + (rng or random).random() / 2)
