"""The refresher's control loop: level-based, one pass over everything whenever something changed or a token
is due.

A pass is a list of steps, each a small function with one job:

1. ``_targets``: what the index holds; invalid objects get the webhook's message as a Warning Event.
2. ``_pairs``: each target with its credential (``Sources``: cached, re-read every --credentials-resync).
3. ``make_plan``: one token per credential and scope, carrying the targets it fills and its renewal window.
4. ``_mint``: the tokens that are due, bounded per provider. A failure keeps the old token until it expires
   and decides by its type what happens next: a ``TemporaryError`` retries with capped backoff (no sooner than
   Retry-After), a ``PermanentError`` waits until the credential changes (a new fingerprint, a new token).
5. ``Writer.write_all``: only the Secrets whose owned fields differ.
6. ``_forget`` and ``_update_gauges``: drop the state of tokens no longer planned; refresh the gauges.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

from common import names
from common.backoff import Backoff
from common.informer import Informer
from common.kube import TRANSPORT_ERRORS
from common.times import rfc3339
from refresher import metrics
from refresher.cluster import Cluster
from refresher.config import RefresherConfig
from refresher.credentials import Proxy
from refresher.errors import MintError
from refresher.events import Reporter
from refresher.index import Index
from refresher.plan import InstallationKey, MintKey, MintRequest, Pair, Plan, PlannedToken, make_plan
from refresher.providers import ListsRepositories, Provider
from refresher.providers.github import GitHubProvider
from refresher.schedule import TokenState
from refresher.sources import Sources
from refresher.targets import Invalid, Target, TargetKey
from refresher.writer import Job, Writer

log = logging.getLogger(__name__)

# A pass that could not reach the apiserver is retried on this schedule (the informers recover on their own).
PASS_BACKOFF = Backoff(base_s=0.4, cap_s=10.0)
COALESCE_S = 0.05  # after a wake-up, let a burst of watch events land before the next pass
# The refusals of a central credential's grant (refresher.grants), counted per pass in a gauge
GRANT_RULES = ("CredentialsNamespaceRefused", "NamespaceNotGranted", "RepositoryNotGranted", "PermissionsNotGranted")


@dataclass
class OutOfReach:
    repositories: frozenset[str]
    recheck_at: float
    request: MintRequest  # a request of that installation, to list its repositories with


class Controller:
    def __init__(
        self,
        config: RefresherConfig,
        providers: dict[str, Provider],
        reporter: Reporter,
        cluster: Cluster,
        index: Index,
        informers: list[Informer] | None = None,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._providers = providers
        self._reporter = reporter
        self._index = index
        self._informers = informers or []
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter
        self._sources = Sources(cluster, config)
        self._writer = Writer(
            cluster,
            index,
            reporter,
            concurrency=config.write_concurrency,
            bearer=config.azure_auth == "bearer",
            conflict_retry_s=config.credentials_resync_s,
        )
        self._mint_gates = {p: asyncio.Semaphore(config.mint_concurrency) for p in names.SERVABLE_PROVIDERS}
        self.tokens: dict[MintKey, TokenState] = {}
        # Repositories GitHub said an installation cannot reach, left out of every token's scope until
        # re-checked (``--github-recheck-interval``): one object's deleted repository fails that object alone.
        self.unreachable: dict[InstallationKey, OutOfReach] = {}

    @property
    def synced(self) -> bool:
        return all(i.synced.is_set() for i in self._informers)

    # --- the loop ---------------------------------------------------------------------------------

    async def run(self) -> None:
        tasks = [asyncio.create_task(i.run()) for i in self._informers]
        try:
            await asyncio.gather(*(i.synced.wait() for i in self._informers))
            log.info(
                "caches synced",
                extra={"gitrepositories": len(self._index.gitrepos), "opted_in": len(self._index.opt_ins)},
            )
            failures = 0
            wake = self._index.wake
            while True:
                wake.clear()
                try:
                    next_due = await self.reconcile()
                    failures = 0
                except TRANSPORT_ERRORS as err:
                    failures += 1
                    delay = PASS_BACKOFF.delay(failures, self._rng)
                    log.warning(
                        "apiserver unreachable; retrying",
                        extra={"error": type(err).__name__, "retry_in_s": round(delay, 2)},
                    )
                    next_due = self._clock() + delay
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that races the
                # wake-up, and this loop would then never stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(next_due - self._clock(), COALESCE_S)):
                        await wake.wait()
                await asyncio.sleep(COALESCE_S)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._reporter.events.drain()

    async def reconcile(self) -> float:
        """One pass over everything; returns when the next pass is due at the latest."""
        now = self._clock()
        targets = list(self._targets())
        await self._sources.refresh(targets, now)
        await self._recheck_unreachable(now)
        proxies: dict[TargetKey, Proxy] = {}
        plan = make_plan(
            await self._pairs(targets, now, proxies),
            self._config.github_token_scope,
            self._config.gcp_scopes,
            unreachable={key: entry.repositories for key, entry in self.unreachable.items()},
            proxies=proxies,
        )
        self._report_unreachable(plan)
        due = {key: planned for key, planned in plan.tokens.items() if self._state(planned, now).due(now)}
        # Secrets of tokens not due are written at once; those of a due token as soon as it is minted (or its
        # mint failed: then the old token, while it is valid), not after every mint of the pass.
        ready = itertools.chain.from_iterable(
            self._jobs(key, planned, now) for key, planned in plan.tokens.items() if key not in due
        )
        if await self._writer.write_all(ready, self._clock(), later=self._minted(due)):
            metrics.LAST_SYNC.set(self._clock())
        self._forget(plan)
        self._update_gauges(plan)
        return self._next_due(now)

    # --- the steps --------------------------------------------------------------------------------

    def _targets(self) -> Iterator[Target]:
        for item in self._index.targets():
            if isinstance(item, Invalid):
                self._reporter.warn(item, item.reason, item.message)
            else:
                yield item

    async def _pairs(self, targets: list[Target], now: float, proxies: dict[TargetKey, Proxy]) -> list[Pair]:
        """Each target with its credential (and, in ``proxies``, the proxy its mints go through)."""
        pairs: list[Pair] = []
        refused = dict.fromkeys(GRANT_RULES, 0)
        for target in targets:
            try:
                credential = await self._sources.credential_for(target, now)
                proxy = self._sources.proxy_for(target)
            except MintError as err:
                self._reporter.mint_failed(target, err)
                if err.reason in refused:
                    refused[err.reason] += 1
                continue
            if proxy is False:
                continue  # its proxy Secret could not be read yet: the next pass asks again
            if isinstance(proxy, Proxy):
                proxies[target.key] = proxy
            if credential is not None:
                pairs.append((target, credential))
                for warning in self._sources.warnings(target):
                    self._reporter.warn_once(target, "CredentialsWarning", warning)
        for rule, count in refused.items():
            metrics.GRANT_REFUSED.labels(rule).set(count)
        return pairs

    def _state(self, planned: PlannedToken, now: float) -> TokenState:
        """The token's state; a token first seen (a new leader, a new object) starts from the live token our
        Secrets already hold, if any: a failover or a restart then mints nothing that is not due."""
        key = planned.request.key
        state = self.tokens.get(key)
        if state is None:
            state = self.tokens[key] = TokenState()
            held = self._index.held.get((key.namespace, key.digest))
            if held is not None and held.expires_at > now:
                state.minted(held, planned.window_s, self._rng)
                log.debug("token adopted", extra={"provider": key.provider, "credential": key.fingerprint})
        return state

    async def _mint(self, planned: PlannedToken) -> None:
        key = planned.request.key
        state = self.tokens[key]
        async with self._mint_gates[key.provider]:
            started = time.perf_counter()  # after the gate: the mint's own latency, not the queue's
            try:
                token = await self._providers[key.provider].mint(planned.request)
            except MintError as err:
                if not await self._isolated(planned, err):
                    self._mint_failed(planned, state, err)
                return
            metrics.MINT_SECONDS.labels(key.provider).observe(time.perf_counter() - started)
        metrics.MINTS.labels(key.provider, "ok").inc()
        state.minted(token, planned.window_s, self._rng)
        log.info(
            "token minted",
            extra={
                "provider": key.provider,
                "credential": key.fingerprint,
                "expires_at": rfc3339(token.expires_at),
                "renew_in_s": round(state.renew_at - self._clock(), 1),
            },
        )

    async def _isolated(self, planned: PlannedToken, err: MintError) -> bool:
        """GitHub refused a scoped token (422): if the installation's repository list shows repositories out of
        its reach, remember them and plan again at once, so the token is minted for the rest and only the
        objects naming those repositories are told (``_report_unreachable``). False when the refusal is shared
        by design (a permission every member asked for) or cannot be told apart: then all members are told."""
        request = planned.request
        provider = self._providers[request.key.provider]
        if err.reason != "ScopeRefused" or not request.repositories or not isinstance(provider, ListsRepositories):
            return False
        try:
            reachable = await provider.reachable(request)
        except MintError as listing:
            log.warning("repository list unavailable", extra={"reason": listing.reason})
            return False
        missing = frozenset(request.repositories) - reachable if reachable is not None else frozenset()
        if not missing:
            return False
        key = request.key
        installation_key = (key.namespace, key.fingerprint, request.installation)
        known = self.unreachable.get(installation_key)
        repositories = missing | (known.repositories if known is not None else frozenset())
        recheck_at = self._clock() + self._config.github_recheck_s
        self.unreachable[installation_key] = OutOfReach(repositories, recheck_at, request)
        metrics.MINTS.labels(key.provider, "ScopeIsolated").inc()
        log.info("repositories out of the installation's reach", extra={"count": len(missing)})
        self._index.wake.set()  # the next pass mints the token without them
        return True

    async def _recheck_unreachable(self, now: float) -> None:
        """Ask again, for each installation whose re-check is due, which of its unreachable repositories are
        back: those re-enter the scopes (the token widens at once); the rest stay out for another interval. The
        shared token is never re-tried with them, so a repository still gone costs no refused mint and no
        re-mint of the others' token."""
        for key, entry in list(self.unreachable.items()):
            if entry.recheck_at > now:
                continue
            provider = self._providers.get(entry.request.key.provider)
            reachable: frozenset[str] | None = None
            if isinstance(provider, ListsRepositories):
                try:
                    reachable = await provider.reachable(entry.request)
                except MintError as err:
                    log.warning("repository list unavailable", extra={"reason": err.reason})
            if reachable is None:  # cannot tell: try the whole scope again (GitHub's answer will tell)
                del self.unreachable[key]
                continue
            still = entry.repositories - reachable
            if still:
                self.unreachable[key] = OutOfReach(still, now + self._config.github_recheck_s, entry.request)
            else:
                del self.unreachable[key]

    def _report_unreachable(self, plan: Plan) -> None:
        counts = {True: 0, False: 0}
        for item in plan.unreachable:
            counts[item.served] += 1
            repositories = ", ".join(item.repositories)
            rest = (
                "the token in its Secret covers its other repositories"
                if item.served
                else "it gets no token until the repository is reachable (the old token stays until it expires)"
            )
            self._reporter.warn(
                item.target,
                "RepositoryUnreachable",
                f"the GitHub App installation cannot reach {repositories} (deleted, renamed, or not granted to the "
                f"App): {rest}; checked again every {self._config.github_recheck_s:g}s",
            )
        metrics.UNREACHABLE.labels("served").set(counts[True])
        metrics.UNREACHABLE.labels("refused").set(counts[False])

    def _mint_failed(self, planned: PlannedToken, state: TokenState, err: MintError) -> None:
        key = planned.request.key
        state.failed(err, self._clock(), self._rng)
        metrics.MINTS.labels(key.provider, err.reason).inc()
        log.warning(
            "token mint failed",
            extra={
                "provider": key.provider,
                "credential": key.fingerprint,
                "reason": err.reason,
                "error": str(err),
                "attempt": state.failures,
                "retry_in_s": None if state.retry_at is None else round(state.retry_at - self._clock(), 1),
            },
        )
        keep_old = state.usable(self._clock()) is not None
        for target, _ in planned.members:
            self._reporter.mint_failed(target, err, keep_old=keep_old)

    def _jobs(self, key: MintKey, planned: PlannedToken, now: float) -> Iterator[Job]:
        token = self.tokens[key].usable(now) if key in self.tokens else None
        if token is None:
            return  # nothing valid to write: never blank a Secret
        for target, credential in planned.members:
            yield target, credential, token, key.digest

    async def _minted(self, due: dict[MintKey, PlannedToken]) -> AsyncIterator[Iterator[Job]]:
        """Each due token's Secrets, as its mint ends (in the order they end)."""

        async def mint(key: MintKey, planned: PlannedToken) -> tuple[MintKey, PlannedToken]:
            await self._mint(planned)
            return key, planned

        tasks = [asyncio.create_task(mint(key, planned)) for key, planned in due.items()]
        try:
            for finished in asyncio.as_completed(tasks):
                key, planned = await finished
                yield self._jobs(key, planned, self._clock())
        finally:  # the pass ended early (stopped, or the apiserver went away): no mint outlives it
            for task in tasks:
                task.cancel()

    def _forget(self, plan: Plan) -> None:
        for key in [k for k in self.tokens if k not in plan.tokens]:
            del self.tokens[key]
        self._index.retain_held({(key.namespace, key.digest) for key in plan.tokens})
        self._reporter.retain({t.key for planned in plan.tokens.values() for t, _ in planned.members})
        self._writer.retain({(t.namespace, t.secret) for planned in plan.tokens.values() for t, _ in planned.members})
        github = self._providers.get(names.PROVIDER_GITHUB)
        if isinstance(github, GitHubProvider):
            github.forget({key.fingerprint for key in plan.tokens if key.provider == names.PROVIDER_GITHUB})

    def _update_gauges(self, plan: Plan) -> None:
        secrets = {"gitrepository": 0, "opt-in": 0}
        kept: set[tuple[str, str]] = set()
        for planned in plan.tokens.values():
            for target, _ in planned.members:
                secrets["gitrepository" if target.kind == "GitRepository" else "opt-in"] += 1
                kept.add((target.namespace, target.secret))
        for source, count in secrets.items():
            metrics.SECRETS_MANAGED.labels(source).set(count)
        metrics.TOKEN_EXPIRY.retain(kept)
        metrics.FAILING.clear()
        for key, state in self.tokens.items():
            if state.error is not None:
                metrics.FAILING.labels(key.provider, state.error.reason).inc()

    def _next_due(self, now: float) -> float:
        due = now + self._config.credentials_resync_s
        for state in self.tokens.values():
            at = state.next_due()
            if at is not None:
                due = min(due, at)
        return due
