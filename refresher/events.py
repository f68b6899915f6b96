"""Kubernetes Events on the GitRepository (or opted-in Secret), visible in ``kubectl describe``.

Events never hold up the work that caused them: ``emit`` queues, a few workers write. The queue is bounded
(like client-go's broadcaster): when it is full, an Event is dropped and counted, never buffered without
limit. Repeats of the same (object, reason, message) within a minute are dropped; later ones bump the
existing Event's count. Messages come from our own error classes: never a token, key or Secret value.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from common.kube import call_raw
from refresher import metrics
from refresher.outputs import GITREPOSITORY_API_VERSION

log = logging.getLogger(__name__)

COMPONENT = "flux-passwordless-refresher"
REPEAT_EVERY_S = 60.0
REQUEST_TIMEOUT_S = 10.0
QUEUE_SIZE = 1000
PRUNE_ABOVE = 20000
FORGET_AFTER_S = 3600.0
WORKERS = 4


@dataclass(frozen=True)
class Involved:
    kind: str
    namespace: str
    name: str
    uid: str


@dataclass(frozen=True)
class _Pending:
    involved: Involved
    event_type: str
    reason: str
    message: str


class EventRecorder:
    def __init__(self, api: client.ApiClient) -> None:
        self._core = client.CoreV1Api(api)
        self._seen: dict[tuple[str, str, str], tuple[str, int, float]] = {}  # -> (event name, count, last)
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(QUEUE_SIZE)
        self._workers: list[asyncio.Task[None]] = []
        self.emitted = 0

    def emit(self, involved: Involved, event_type: str, reason: str, message: str) -> None:
        key = (involved.uid, reason, message)
        seen = self._seen.get(key)
        now = time.monotonic()
        if seen is not None and now - seen[2] < REPEAT_EVERY_S:
            return
        self._seen[key] = (seen[0] if seen else "", (seen[1] if seen else 0) + 1, now)
        if len(self._seen) > PRUNE_ABOVE:  # forget what has not repeated for a long while
            for old in [k for k, v in self._seen.items() if now - v[2] > FORGET_AFTER_S]:
                del self._seen[old]
        if not self._workers:
            self._workers = [asyncio.create_task(self._work()) for _ in range(WORKERS)]
        try:
            self._queue.put_nowait(_Pending(involved, event_type, reason, message))
        except asyncio.QueueFull:
            metrics.EVENTS_DROPPED.inc()

    async def _work(self) -> None:
        while True:
            pending = await self._queue.get()
            try:
                await self._write(pending)
            finally:
                self._queue.task_done()

    async def _write(self, p: _Pending) -> None:
        key = (p.involved.uid, p.reason, p.message)
        name, count, last = self._seen.get(key, ("", 1, 0.0))
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        ns = p.involved.namespace
        try:
            if name:
                await call_raw(
                    self._core.patch_namespaced_event(
                        name,
                        ns,
                        {"count": count, "lastTimestamp": stamp},
                        _preload_content=False,
                        _request_timeout=REQUEST_TIMEOUT_S,
                    )
                )
            else:
                name = f"{p.involved.name}.{uuid.uuid4().hex[:16]}"
                api_version = GITREPOSITORY_API_VERSION if p.involved.kind == "GitRepository" else "v1"
                body = {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {"name": name, "namespace": ns},
                    "involvedObject": {
                        "apiVersion": api_version,
                        "kind": p.involved.kind,
                        "namespace": ns,
                        "name": p.involved.name,
                        "uid": p.involved.uid,
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
                await call_raw(
                    self._core.create_namespaced_event(
                        ns,
                        body,  # type: ignore[arg-type]  # a plain dict is serialised as is
                        _preload_content=False,
                        _request_timeout=REQUEST_TIMEOUT_S,
                    )
                )
                self._seen[key] = (name, count, last)
            self.emitted += 1
        except ApiException as err:
            log.warning(
                "event not recorded", extra={"reason": p.reason, "status": err.status, "object": p.involved.name}
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            log.warning(
                "event not recorded", extra={"reason": p.reason, "error": type(err).__name__, "object": p.involved.name}
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
