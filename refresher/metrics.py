"""Prometheus metrics of the refresher (names only: never a token, and no Secret value in any label)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

MINTS = Counter(
    "flux_passwordless_mints", "Token mints, by provider and result (ok, or the error reason).", ["provider", "result"]
)
MINT_SECONDS = Histogram(
    "flux_passwordless_mint_duration_seconds",
    "Time to mint a token, by provider.",
    ["provider"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SECRETS_MANAGED = Gauge("flux_passwordless_secrets_managed", "Secrets kept filled, by kind of source.", ["source"])
SECRET_WRITES = Counter("flux_passwordless_secret_writes", "Secret writes, by result.", ["result"])
FAILING = Gauge(
    "flux_passwordless_failing_tokens", "Tokens whose last mint failed, by provider and reason.", ["provider", "reason"]
)
UNREACHABLE = Gauge(
    "flux_passwordless_repositories_unreachable_objects",
    "Objects naming a GitHub repository their installation cannot reach: served (their other repositories got "
    "a token) or refused (no token).",
    ["result"],
)
GRANT_REFUSED = Gauge(
    "flux_passwordless_grant_refused_objects",
    "Objects naming a central credential that does not grant them, by the rule that refused "
    "(CredentialsNamespaceRefused, NamespaceNotGranted, RepositoryNotGranted, PermissionsNotGranted).",
    ["rule"],
)
LAST_SYNC = Gauge("flux_passwordless_last_successful_sync_timestamp_seconds", "When every Secret was last up to date.")
LEADER = Gauge("flux_passwordless_leader", "1 while this replica leads (writes), else 0.")
EVENTS_DROPPED = Counter(
    "flux_passwordless_events_dropped",
    "Events not written: the event queue was full (queue-full), or Normal Events past their rate (rate-limited).",
    ["why"],
)


class TokenExpiry(Collector):
    """When the token in each output Secret expires: one plain float per Secret (prometheus-client's own
    labelled children cost ~2 KB each, too much at 10,000 Secrets)."""

    def __init__(self) -> None:
        self.expiry: dict[tuple[str, str], float] = {}

    def record(self, namespace: str, secret: str, expires_at: float) -> None:
        self.expiry[(namespace, secret)] = expires_at

    def retain(self, keys: set[tuple[str, str]]) -> None:
        for key in [k for k in self.expiry if k not in keys]:
            del self.expiry[key]

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "flux_passwordless_token_expiry_timestamp_seconds",
            "When the token in each output Secret expires.",
            labels=["namespace", "secret"],
        )
        for (namespace, secret), value in self.expiry.items():
            family.add_metric([namespace, secret], value)
        yield family


TOKEN_EXPIRY = TokenExpiry()
REGISTRY.register(TOKEN_EXPIRY)
