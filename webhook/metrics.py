"""Admission metrics, kept as plain numbers on the event loop and exposed through prometheus-client.

Every request and every scrape run on the one event-loop thread, so the counts need no lock; a custom
collector turns them into the usual counter and histogram families at scrape time. (prometheus-client's
own Counter/Histogram take a lock per update, which showed up in the hot path's profile.)
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
# Label values come from closed sets only: ``operation`` is the caller's text, and one series per distinct
# string would let anyone who can reach the port grow memory and /metrics without bound.
OPERATIONS = frozenset({"CREATE", "UPDATE", "DELETE", "CONNECT", "unknown"})  # unknown: a malformed review


class AdmissionMetrics(Collector):
    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = {}
        self._buckets: dict[str, list[int]] = {}  # per kind: counts per bucket, last one is +Inf
        self._sums: dict[str, float] = {}
        self.refusals: dict[tuple[str, str], int] = {}

    def refused(self, kind: str, why: str) -> None:
        """A body refused before it was decoded (``why``: ``common.bodies.Refusal.why``, a closed set)."""
        self.refusals[kind, why] = self.refusals.get((kind, why), 0) + 1

    def record(self, kind: str, operation: str, result: str, seconds: float | None) -> None:
        """``kind`` and ``result`` are our own constants; ``operation`` is folded into ``OPERATIONS`` or "other"."""
        key = (kind, operation if operation in OPERATIONS else "other", result)
        self.requests[key] = self.requests.get(key, 0) + 1
        if seconds is None:
            return
        buckets = self._buckets.get(kind)
        if buckets is None:
            buckets = self._buckets[kind] = [0] * (len(BUCKETS) + 1)
            self._sums[kind] = 0.0
        buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        self._sums[kind] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "flux_passwordless_webhook_requests",
            "Admission requests answered, by kind, operation and result "
            "(patched, allowed, denied, skipped, malformed).",
            labels=["kind", "operation", "result"],
        )
        for (kind, operation, result), value in sorted(self.requests.items()):
            requests.add_metric([kind, operation, result], value)
        yield requests
        refusals = CounterMetricFamily(
            "flux_passwordless_webhook_bodies_refused",
            "Request bodies refused before they were read or decoded, by kind and why "
            "(encoding, too-large, busy, timeout, incomplete).",
            labels=["kind", "why"],
        )
        for (kind, why), value in sorted(self.refusals.items()):
            refusals.add_metric([kind, why], value)
        yield refusals
        latency = HistogramMetricFamily(
            "flux_passwordless_webhook_request_duration_seconds",
            "Time to answer an admission request, by kind.",
            labels=["kind"],
        )
        for kind, counts in sorted(self._buckets.items()):
            cumulative, total = [], 0
            for bound, count in zip((*map(str, BUCKETS), "+Inf"), counts, strict=True):
                total += count
                cumulative.append((bound, float(total)))
            latency.add_metric([kind], cumulative, self._sums[kind])
        yield latency


METRICS = AdmissionMetrics()
REGISTRY.register(METRICS)
