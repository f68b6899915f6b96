"""Prometheus metrics of the refresher (names only: never a token, and no Secret value in any label)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MINTS = Counter(
    "flux_passwordless_mints", "Token mints, by provider and result (ok, or the error reason).", ["provider", "result"]
)
MINT_SECONDS = Histogram(
    "flux_passwordless_mint_duration_seconds",
    "Time to mint a token, by provider.",
    ["provider"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TOKEN_EXPIRY = Gauge(
    "flux_passwordless_token_expiry_timestamp_seconds",
    "When the token in each output Secret expires.",
    ["namespace", "secret"],
)
SECRETS_MANAGED = Gauge("flux_passwordless_secrets_managed", "Secrets kept filled, by kind of source.", ["source"])
SECRET_WRITES = Counter("flux_passwordless_secret_writes", "Secret writes, by result.", ["result"])
FAILING = Gauge(
    "flux_passwordless_failing_tokens", "Tokens whose last mint failed, by provider and reason.", ["provider", "reason"]
)
LAST_SYNC = Gauge("flux_passwordless_last_successful_sync_timestamp_seconds", "When every Secret was last up to date.")
LEADER = Gauge("flux_passwordless_leader", "1 while this replica leads (writes), else 0.")
