"""Kubernetes Events on the GitRepository (or opted-in Secret), visible in ``kubectl describe``.

Repeats of the same (object, reason, message) bump the existing Event's count at most once a minute instead
of creating new ones. Messages come from our own error classes: never a token, key or Secret value.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from refresher.outputs import GITREPOSITORY_API_VERSION

log = logging.getLogger(__name__)

COMPONENT = "flux-passwordless-refresher"
REPEAT_EVERY_S = 60.0
REQUEST_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Involved:
    kind: str
    namespace: str
    name: str
    uid: str

    def reference(self) -> client.V1ObjectReference:
        api_version = GITREPOSITORY_API_VERSION if self.kind == "GitRepository" else "v1"
        return client.V1ObjectReference(
            api_version=api_version, kind=self.kind, namespace=self.namespace, name=self.name, uid=self.uid
        )


class EventRecorder:
    def __init__(self, api: client.ApiClient, max_in_flight: int = 8) -> None:
        self._core = client.CoreV1Api(api)
        self._seen: dict[tuple[str, str, str], tuple[str, int, float]] = {}  # -> (event name, count, last)
        self._gate = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self.emitted = 0

    def emit(self, involved: Involved, event_type: str, reason: str, message: str) -> None:
        """Fire and forget: Events never hold up the work that caused them."""
        key = (involved.uid, reason, message)
        seen = self._seen.get(key)
        now = time.monotonic()
        if seen is not None and now - seen[2] < REPEAT_EVERY_S:
            return
        self._seen[key] = (seen[0] if seen else "", (seen[1] if seen else 0) + 1, now)
        task = asyncio.create_task(self._write(involved, event_type, reason, message, key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(
        self, involved: Involved, event_type: str, reason: str, message: str, key: tuple[str, str, str]
    ) -> None:
        name, count, last = self._seen[key]
        stamp = dt.datetime.now(dt.UTC)
        async with self._gate:
            try:
                if name:
                    await self._core.patch_namespaced_event(
                        name,
                        involved.namespace,
                        {"count": count, "lastTimestamp": stamp.isoformat()},
                        _request_timeout=REQUEST_TIMEOUT_S,
                    )
                else:
                    name = f"{involved.name}.{uuid.uuid4().hex[:16]}"
                    await self._core.create_namespaced_event(
                        involved.namespace,
                        client.CoreV1Event(
                            metadata=client.V1ObjectMeta(name=name, namespace=involved.namespace),
                            involved_object=involved.reference(),
                            reason=reason,
                            message=message[:1024],
                            type=event_type,
                            source=client.V1EventSource(component=COMPONENT),
                            reporting_component=COMPONENT,
                            reporting_instance=COMPONENT,
                            first_timestamp=stamp,
                            last_timestamp=stamp,
                            count=count,
                        ),
                        _request_timeout=REQUEST_TIMEOUT_S,
                    )
                    self._seen[key] = (name, count, last)
                self.emitted += 1
            except ApiException as err:
                log.warning(
                    "event not recorded", extra={"reason": reason, "status": err.status, "object": involved.name}
                )

    async def drain(self, within_s: float = 5.0) -> None:
        """Let Events in flight finish, for at most ``within_s`` seconds (the apiserver may be gone)."""
        pending = list(self._tasks)
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=within_s)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
