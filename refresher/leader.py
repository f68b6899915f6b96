"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it.

Not ``kubernetes_asyncio.leaderelection``: its ``run`` returns for good once the lease is lost (no way back to
standby), it never releases the lease on shutdown, and only ``ApiException`` is caught (a dropped connection
escapes its loop).

Only the leader runs the controller (and so writes). The leader renews every ``retry_s``; if it cannot renew
for ``renew_deadline_s`` it stops leading at once (before its lease can expire under it). Others take over a
lease whose renewTime + leaseDuration has passed. On shutdown the leader releases the lease (empty holder,
1 s duration) so a standby takes over without waiting out the full duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from common.kube import TRANSPORT_ERRORS, read_json
from common.times import parse_rfc3339, rfc3339
from refresher import metrics

log = logging.getLogger(__name__)


class LeaderElector:
    def __init__(
        self,
        leases: client.CoordinationV1Api,
        namespace: str,
        name: str,
        identity: str,
        lease_s: int = 15,
        renew_deadline_s: float = 10.0,
        retry_s: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._api = leases
        self.namespace, self.name, self.identity = namespace, name, identity
        self._lease_s, self._renew_deadline_s, self._retry_s = lease_s, renew_deadline_s, retry_s
        self._clock = clock
        self.leading = False

    async def _try(self) -> bool:
        """Acquire or renew once; True when we hold the lease afterwards."""
        now = self._clock()
        try:
            lease = await read_json(self._api.read_namespaced_lease(self.name, self.namespace, _preload_content=False))
        except ApiException as err:
            if err.status != 404:
                raise
            body = self._body(None, now, acquire=True, transitions=0)
            try:
                await self._api.create_namespaced_lease(self.namespace, body)  # type: ignore[arg-type]
            except ApiException as create_err:
                if create_err.status == 409:
                    return False
                raise
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        expires = parse_rfc3339(spec.get("renewTime")) + float(spec.get("leaseDurationSeconds") or self._lease_s)
        if holder and holder != self.identity and expires > now:
            return False
        taking_over = holder != self.identity
        transitions = int(spec.get("leaseTransitions") or 0) + (1 if taking_over else 0)
        body = self._body(lease, now, acquire=taking_over, transitions=transitions)
        try:
            await self._api.replace_namespaced_lease(self.name, self.namespace, body)  # type: ignore[arg-type]
        except ApiException as err:
            if err.status == 409:
                return False  # someone else wrote it first
            raise
        return True

    def _body(self, lease: dict[str, Any] | None, now: float, acquire: bool, transitions: int) -> dict[str, Any]:
        spec = dict((lease or {}).get("spec") or {})
        spec.update(
            holderIdentity=self.identity,
            leaseDurationSeconds=self._lease_s,
            renewTime=rfc3339(now, micro=True),
            leaseTransitions=transitions,
        )
        if acquire:
            spec["acquireTime"] = rfc3339(now, micro=True)
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if lease is not None:
            metadata["resourceVersion"] = lease["metadata"]["resourceVersion"]
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}

    async def _attempt(self) -> bool:
        try:
            async with asyncio.timeout(self._retry_s * 2):
                return await self._try()
        except (ApiException, ValueError, *TRANSPORT_ERRORS) as err:
            log.warning("lease request failed", extra={"lease": self.name, "error": type(err).__name__})
            return False

    async def run(self, lead: Callable[[], Coroutine[None, None, None]]) -> None:
        """Forever: wait to acquire, run ``lead`` while renewing, stop it when renewal fails.

        ``lead`` is meant to run until cancelled: if it ends by itself (a crash), so does this, with its error,
        so the process reports itself dead (``/livez``) rather than lead without working.
        """
        try:
            while True:
                while not await self._attempt():  # noqa: ASYNC110 - polling the apiserver is the protocol
                    await asyncio.sleep(self._retry_s)
                self._set_leading(True)
                task: asyncio.Task[None] = asyncio.create_task(lead())
                last_renewed = self._clock()
                try:
                    while not task.done():
                        await asyncio.sleep(self._retry_s)
                        if await self._attempt():
                            last_renewed = self._clock()
                        elif self._clock() - last_renewed > self._renew_deadline_s:
                            log.warning("lost the lease: stopping", extra={"lease": self.name})
                            break
                    if task.done():
                        task.result()  # re-raises the crash
                        raise RuntimeError("the leader's work ended while it still held the lease")
                finally:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                    self._set_leading(False)
        finally:
            await self.release()

    def _set_leading(self, leading: bool) -> None:
        if leading != self.leading:
            log.info("leadership changed", extra={"lease": self.name, "identity": self.identity, "leading": leading})
        self.leading = leading
        metrics.LEADER.set(1 if leading else 0)

    async def release(self) -> None:
        """Give the lease up (only if we hold it) so a standby need not wait for it to expire."""
        try:
            async with asyncio.timeout(self._retry_s * 2):
                await self._release()
        except (ApiException, ValueError, *TRANSPORT_ERRORS) as err:
            log.warning("lease not released", extra={"lease": self.name, "error": type(err).__name__})

    async def _release(self) -> None:
        lease = await read_json(self._api.read_namespaced_lease(self.name, self.namespace, _preload_content=False))
        if (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return
        body = self._body(
            lease, self._clock(), acquire=False, transitions=int(lease["spec"].get("leaseTransitions") or 0)
        )
        body["spec"]["holderIdentity"] = None
        body["spec"]["leaseDurationSeconds"] = 1
        await self._api.replace_namespaced_lease(self.name, self.namespace, body)  # type: ignore[arg-type]
        log.info("lease released", extra={"lease": self.name})
