"""Writing tokens into Secrets: only where the fields we own differ, never over a Secret that is not ours.

- A managed GitRepository's output Secret is created whole, and re-applied when what we own in it changed. A 409
  on create is either ours for this very object but outside the informer (another shard wrote it: adopted) or
  someone else's Secret (a Warning Event, never an overwrite).
- An opted-in Secret gets only ``username``/``password`` (and our annotations), by server-side apply.

A fixed pool of workers pulls from one iterator of jobs, so memory stays flat however many Secrets there are.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from common import names
from common.kube import TRANSPORT_ERRORS
from common.objects import Key
from refresher import metrics
from refresher.cluster import Cluster
from refresher.credentials import Credential
from refresher.events import Reporter
from refresher.index import Index, OptIn, Output
from refresher.outputs import OPT_IN_KEYS, digest, opt_in_apply, owned_secret
from refresher.providers import Token
from refresher.targets import Target

log = logging.getLogger(__name__)

Job = tuple[Target, Credential, Token, str]  # ..., the token's key (MintKey.digest)


class Writer:
    def __init__(
        self,
        cluster: Cluster,
        index: Index,
        reporter: Reporter,
        *,
        concurrency: int,
        bearer: bool,
        conflict_retry_s: float,
    ) -> None:
        self._cluster = cluster
        self._index = index
        self._reporter = reporter
        self._concurrency = concurrency
        self._bearer = bearer
        self._conflict_retry_s = conflict_retry_s
        self._conflicts: dict[Key, float] = {}  # a foreign Secret in the way -> when to look again
        # What each output should hold, by the (target, token) it was computed for: a pass over 10,000 Secrets
        # whose token did not change compares digests instead of building and hashing 10,000 Secrets.
        self._wanted: dict[Key, tuple[Target, Token, Credential, str, bytes]] = {}

    async def write_all(
        self, jobs: Iterable[Job], now: float, later: AsyncIterator[Iterable[Job]] | None = None
    ) -> bool:
        """Write every job that needs it: ``jobs`` first, then each group ``later`` yields as it comes (a due
        token's Secrets once it is minted). True when none failed."""
        failed = 0
        queue: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=4 * self._concurrency)  # memory stays flat

        async def worker() -> None:
            nonlocal failed
            while (job := await queue.get()) is not None:
                target, credential, token, token_key = job
                try:
                    ok = await self._write(target, credential, token, token_key, now)
                except Exception:  # a bug must not stop the pool (the queue would fill and the pass hang)
                    log.exception("secret write failed unexpectedly", extra={"namespace": target.namespace})
                    ok = False
                failed += not ok

        workers = [asyncio.create_task(worker()) for _ in range(self._concurrency)]
        try:
            for job in jobs:
                await queue.put(job)
            if later is not None:
                async for group in later:
                    for job in group:
                        await queue.put(job)
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
        for key in [k for k, until in self._conflicts.items() if until <= now]:
            del self._conflicts[key]
        return failed == 0

    def retain(self, keys: set[Key]) -> None:
        """Forget what is remembered of outputs no longer planned."""
        for key in [k for k in self._wanted if k not in keys]:
            del self._wanted[key]

    async def _write(self, target: Target, credential: Credential, token: Token, token_key: str, now: float) -> bool:
        if target.kind == "Secret":
            return await self._write_opt_in(target, token, token_key)
        return await self._write_owned(target, credential, token, token_key, now)

    async def _write_opt_in(self, target: Target, token: Token, token_key: str) -> bool:
        key = (target.namespace, target.secret)
        desired = opt_in_apply(target, token, token_key)
        wanted = digest(desired, OPT_IN_KEYS)
        observed = self._index.opt_ins.get(key)
        if observed is None or observed.digest != wanted:
            try:
                await self._cluster.apply_secret(target.namespace, target.secret, desired)
            except (ApiException, *TRANSPORT_ERRORS) as err:
                return self._failed(target, err)
            metrics.SECRET_WRITES.labels("applied-opt-in").inc()
            if observed is not None:
                self._index.opt_ins[key] = OptIn(observed.target, wanted)
        self._reporter.holds(target, token)
        return True

    async def _write_owned(
        self, target: Target, credential: Credential, token: Token, token_key: str, now: float
    ) -> bool:
        key = (target.namespace, target.secret)
        if self._conflicts.get(key, 0.0) > now:
            return True  # reported already; looked at again later
        current = self._index.outputs.get(key)
        if current is not None and current.owner_uid != target.uid:
            self._conflict(target, now, "is owned by another object")
            return True
        memo = self._wanted.get(key)
        if (
            memo is not None
            and memo[1] is token
            and memo[2] is credential
            and memo[3] == token_key
            and (memo[0] is target or memo[0] == target)
        ):
            wanted, desired = memo[4], None
        else:
            desired = owned_secret(target, token, credential, self._bearer, token_key)
            wanted = digest(desired)
            self._wanted[key] = (target, token, credential, token_key, wanted)
        if current is None or current.digest != wanted:
            if desired is None:
                desired = owned_secret(target, token, credential, self._bearer, token_key)
            try:
                if current is None:
                    version = await self._cluster.create_secret(target.namespace, desired)
                else:
                    version = await self._cluster.apply_secret(target.namespace, target.secret, desired)
            except ApiException as err:
                if err.status == 409 and current is None:
                    return await self._taken(target, token, token_key, desired, wanted, now)
                return self._failed(target, err)
            except TRANSPORT_ERRORS as err:
                return self._failed(target, err)
            metrics.SECRET_WRITES.labels("created" if current is None else "applied-owned").inc()
            self._index.wrote(key, Output(target.uid, wanted, version), token_key, token)
        self._reporter.holds(target, token)
        return True

    async def _taken(
        self, target: Target, token: Token, token_key: str, desired: dict[str, Any], wanted: bytes, now: float
    ) -> bool:
        """The name is taken by a Secret our informer does not show: ours for this very GitRepository, written by
        another shard (its label moved it here) or before sharding, is adopted; anyone else's is never touched."""
        try:
            existing = await self._cluster.read_secret(target.namespace, target.secret)
        except (ApiException, *TRANSPORT_ERRORS) as err:
            return self._failed(target, err)
        metadata = (existing or {}).get("metadata") or {}
        ours = (metadata.get("labels") or {}).get(names.LABEL_MANAGED_BY) == names.MANAGED_BY_VALUE
        owners = {o.get("uid") for o in metadata.get("ownerReferences") or []}
        if existing is None or not ours or owners != {target.uid}:
            self._conflict(target, now, "exists and is not managed by flux-passwordless")
            return True
        try:
            version = await self._cluster.apply_secret(target.namespace, target.secret, desired)
        except (ApiException, *TRANSPORT_ERRORS) as err:
            return self._failed(target, err)
        metrics.SECRET_WRITES.labels("applied-owned").inc()
        key = (target.namespace, target.secret)
        self._index.wrote(key, Output(target.uid, wanted, version), token_key, token)
        self._reporter.holds(target, token)
        return True

    def _failed(self, target: Target, err: BaseException) -> bool:
        metrics.SECRET_WRITES.labels("failed").inc()
        where = {"namespace": target.namespace, "secret": target.secret}
        if isinstance(err, ApiException):
            log.warning("secret write failed", extra={**where, "status": err.status})
            self._reporter.warn(
                target, "SecretWriteFailed", f"writing Secret {target.secret} failed: HTTP {err.status} {err.reason}"
            )
        else:  # the apiserver is away: say it in the log only, the next pass writes again
            log.warning("secret write failed: apiserver unreachable", extra={**where, "error": type(err).__name__})
        return False

    def _conflict(self, target: Target, now: float, why: str) -> None:
        self._conflicts[(target.namespace, target.secret)] = now + self._conflict_retry_s
        self._reporter.warn(
            target,
            "SecretConflict",
            f'Secret "{target.secret}" {why}; it is left untouched: delete or rename it, or point this '
            "GitRepository's secretRef elsewhere",
        )
