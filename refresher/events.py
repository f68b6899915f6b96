"""Kubernetes Events on the GitRepository (or opted-in Secret), visible in ``kubectl describe``.

Events never hold up the work that caused them: ``emit`` queues, a few workers write. The queue is bounded
(like client-go's broadcaster): when it is full, an Event is dropped and counted, never buffered without
limit. Repeats of the same (object, reason, message) within a minute are dropped; later ones bump the
existing Event's count. Messages come from our own error classes: never a token, key or Secret value.

Normal Events (``TokenMinted``) pass a token bucket (``NORMAL_BURST`` at once, then ``NORMAL_PER_S`` a
second); the rest are dropped and counted. A start, or a failover, that fills 10,000 Secrets at once would
otherwise post 10,000 Events: as many apiserver writes as the Secrets themselves (measured: 10% of the
refresher's CPU while converging, and the apiserver's share on top). One new GitRepository still gets its
Event; Warnings are never rate-limited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from common import names
from common.kube import REQUEST_TIMEOUT_S, TRANSPORT_ERRORS, call_raw
from common.times import rfc3339
from refresher import metrics
from refresher.errors import MintError
from refresher.providers import Token
from refresher.targets import Invalid, Target, TargetKey

log = logging.getLogger(__name__)

COMPONENT = "flux-passwordless-refresher"
REPEAT_EVERY_S = 60.0
QUEUE_SIZE = 1000
PRUNE_ABOVE = 20000
FORGET_AFTER_S = 3600.0
WORKERS = 4
NORMAL_BURST = 50
NORMAL_PER_S = 5.0

EventType = Literal["Normal", "Warning"]
# Reasons a mint failure is reported under; any other error reason is reported as TokenMintFailed.
OWN_EVENT_REASONS = frozenset(
    {
        "InvalidSpec",
        "IdentityRefused",
        "CredentialsNotFound",
        "ServiceAccountNotFound",
        # central credentials (refresher.grants): which rule refused
        "CredentialsNamespaceRefused",
        "NamespaceNotGranted",
        "RepositoryNotGranted",
        "PermissionsNotGranted",
    }
)


class Events(Protocol):
    """What the refresher needs of an event sink (the recorder below, or a test's list)."""

    def emit_for(self, target: Target | Invalid, event_type: EventType, reason: str, message: str) -> None: ...

    async def drain(self, within_s: float = 5.0) -> None: ...


@dataclass(frozen=True)
class _Pending:
    target: Target | Invalid
    event_type: EventType
    reason: str
    message: str


@dataclass
class _Seen:
    event: str  # the Event object's name once written ("" before)
    count: int
    last: float  # monotonic


class EventRecorder:
    def __init__(self, core: client.CoreV1Api, clock: Callable[[], float] = time.monotonic) -> None:
        self._core = core
        self._clock = clock
        self._seen: dict[tuple[str, str, str], _Seen] = {}  # (uid, reason, message) ->
        self._prune_at = PRUNE_ABOVE
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(QUEUE_SIZE)
        self._workers: list[asyncio.Task[None]] = []
        self._normal_budget = float(NORMAL_BURST)
        self._normal_at = clock()

    def emit_for(self, target: Target | Invalid, event_type: EventType, reason: str, message: str) -> None:
        key = (target.uid, reason, message)
        seen = self._seen.get(key)
        now = self._clock()
        if seen is not None and now - seen.last < REPEAT_EVERY_S:
            return
        if event_type == "Normal" and not self._normal_allowed(now):
            metrics.EVENTS_DROPPED.labels("rate-limited").inc()
            return
        if seen is None:
            seen = self._seen[key] = _Seen("", 0, now)
        seen.count += 1
        seen.last = now
        if len(self._seen) > self._prune_at:  # forget what has not repeated for a long while
            for old in [k for k, v in self._seen.items() if now - v.last > FORGET_AFTER_S]:
                del self._seen[old]
            # Scan again only once the map has doubled: with more than PRUNE_ABOVE recent entries (100,000
            # GitRepositories told "TokenMinted" within the hour) a scan on every Event was quadratic, and
            # stalled a refresher at 100,000 objects (bench-shards).
            self._prune_at = max(PRUNE_ABOVE, 2 * len(self._seen))
        if not self._workers:
            self._workers = [asyncio.create_task(self._work()) for _ in range(WORKERS)]
        try:
            self._queue.put_nowait(_Pending(target, event_type, reason, message))
        except asyncio.QueueFull:
            metrics.EVENTS_DROPPED.labels("queue-full").inc()

    def _normal_allowed(self, now: float) -> bool:
        self._normal_budget = min(float(NORMAL_BURST), self._normal_budget + (now - self._normal_at) * NORMAL_PER_S)
        self._normal_at = now
        if self._normal_budget < 1.0:
            return False
        self._normal_budget -= 1.0
        return True

    async def _work(self) -> None:
        while True:
            pending = await self._queue.get()
            try:
                await self._write(pending)
            finally:
                self._queue.task_done()

    async def _write(self, p: _Pending) -> None:
        seen = self._seen.get((p.target.uid, p.reason, p.message)) or _Seen("", 1, 0.0)
        stamp = rfc3339(time.time())
        ns = p.target.namespace
        try:
            if seen.event:
                await call_raw(
                    self._core.patch_namespaced_event(
                        seen.event,
                        ns,
                        {"count": seen.count, "lastTimestamp": stamp},
                        _preload_content=False,
                        _request_timeout=REQUEST_TIMEOUT_S,
                    )
                )
                return
            name = f"{p.target.name}.{uuid.uuid4().hex[:16]}"
            await call_raw(
                self._core.create_namespaced_event(
                    ns,
                    _event_body(p, name, seen.count, stamp),  # type: ignore[arg-type]  # a plain dict is sent as is
                    _preload_content=False,
                    _request_timeout=REQUEST_TIMEOUT_S,
                )
            )
            seen.event = name
        except ApiException as err:
            log.warning("event not recorded", extra={"reason": p.reason, "status": err.status, "object": p.target.name})
        except TRANSPORT_ERRORS as err:
            log.warning(
                "event not recorded", extra={"reason": p.reason, "error": type(err).__name__, "object": p.target.name}
            )

    async def drain(self, within_s: float = 5.0) -> None:
        """Let queued Events be written, for at most ``within_s`` seconds (the apiserver may be gone), then stop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s):
                await self._queue.join()
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []


def _event_body(p: _Pending, name: str, count: int, stamp: str) -> dict[str, object]:
    api_version = names.GITREPOSITORY_API_VERSION if p.target.kind == "GitRepository" else "v1"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": p.target.namespace},
        "involvedObject": {
            "apiVersion": api_version,
            "kind": p.target.kind,
            "namespace": p.target.namespace,
            "name": p.target.name,
            "uid": p.target.uid,
        },
        "reason": p.reason,
        "message": p.message[:1024],
        "type": p.event_type,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": count,
    }


class Reporter:
    """What each target is told: "TokenMinted" once per run of successes, a Warning for every failure (the
    recorder drops repeats), and the expiry of the token its Secret holds (a metric)."""

    def __init__(self, events: Events) -> None:
        self.events = events
        self._announced: set[TargetKey] = set()  # told "TokenMinted" since their last failure
        self._told: set[tuple[TargetKey, str, str]] = set()  # (target, reason, message) given once

    def holds(self, target: Target, token: Token) -> None:
        """``target``'s Secret holds ``token`` (just written, or found already there)."""
        metrics.TOKEN_EXPIRY.record(target.namespace, target.secret, token.expires_at)
        if target.key in self._announced:
            return
        self._announced.add(target.key)
        self.events.emit_for(
            target,
            "Normal",
            "TokenMinted",
            f"Secret {target.secret} holds a {target.provider} token valid until {rfc3339(token.expires_at)}",
        )

    def mint_failed(self, target: Target, err: MintError, keep_old: bool = False) -> None:
        self._announced.discard(target.key)
        suffix = "; the current token stays in place until it expires" if keep_old else ""
        reason = err.reason if err.reason in OWN_EVENT_REASONS else "TokenMintFailed"
        self.events.emit_for(
            target, "Warning", reason, f"{target.provider} token for Secret {target.secret}: {err}{suffix}"
        )

    def warn(self, target: Target | Invalid, reason: str, message: str) -> None:
        self.events.emit_for(target, "Warning", reason, message)

    def warn_once(self, target: Target, reason: str, message: str) -> None:
        """A soft warning, told once per target (not counted up every minute while it lasts)."""
        if (target.key, reason, message) not in self._told:
            self._told.add((target.key, reason, message))
            self.warn(target, reason, message)

    def retain(self, keys: set[TargetKey]) -> None:
        """Forget targets that are gone (so a re-created one is told again)."""
        self._announced &= keys
        self._told = {told for told in self._told if told[0] in keys}
