"""The refresher's control loop.

Informers keep small derived state (targets, observed output digests), never whole objects. One loop then
reconciles level-based: read the credentials it needs (cached, re-read every --credentials-resync so a key
rotation is seen), plan the tokens (one per credential and scope), mint those due (bounded per provider),
and write only the Secrets whose owned fields differ. A failed mint keeps the old token in place until it
expires, retries with capped backoff (or, for a permanent error, waits until the credential changes), and
says so in a Warning Event and in metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from common import names
from common.informer import Informer
from common.kube import call_raw, read_json
from refresher import metrics
from refresher.config import RefresherConfig
from refresher.credentials import (
    Credential,
    GcpKey,
    azure_identity,
    decode_data,
    gcp_credential,
    github_credential,
)
from refresher.errors import MintError, PermanentError, TemporaryError
from refresher.events import EventRecorder, Involved
from refresher.outputs import OPT_IN_KEYS, digest, opt_in_apply, owned_secret, rfc3339
from refresher.plan import MintKey, MintRequest, Plan, make_plan
from refresher.providers import Provider, Token
from refresher.providers.github import GitHubProvider
from refresher.schedule import Backoff, renew_at
from refresher.targets import Invalid, Target, from_gitrepository, from_opted_in_secret

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)
APPLY = "application/apply-patch+yaml"
# The apiserver unreachable (restarting, network): temporary, the next pass tries again.
TRANSPORT_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError)
REQUEST_TIMEOUT_S = 10.0


@dataclass
class TokenState:
    token: Token | None = None
    renew_at: float = 0.0
    failures: int = 0
    retry_at: float | None = 0.0  # None: permanent failure, wait for the inputs to change
    error: MintError | None = None


@dataclass
class CredentialEntry:
    read_at: float
    holder: _DataHolder | None = None
    error: MintError | None = None


@dataclass
class Stats:
    mints: int = 0
    writes: int = 0
    passes: int = 0
    conflicts: int = 0
    write_failures: int = 0
    last_converged: float = 0.0


def _key(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace", "")), str(meta.get("name", "")))


class Controller:
    def __init__(
        self,
        api: client.ApiClient,
        config: RefresherConfig,
        providers: dict[str, Provider],
        events: EventRecorder,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._api = api
        self._core = client.CoreV1Api(api)
        self._config = config
        self._providers = providers
        self._events = events
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter
        self._backoff = Backoff()
        self._mint_gates = {p: asyncio.Semaphore(config.mint_concurrency) for p in names.SERVABLE_PROVIDERS}
        self._api_gate = asyncio.Semaphore(config.write_concurrency)  # API calls in flight
        self._wake = asyncio.Event()
        # derived state, filled by the informers
        self._gitrepos: dict[Key, Target | Invalid] = {}
        self._references: dict[Key, tuple[str, str, str]] = {}  # unmanaged GitRepository -> (ns, secret, url)
        self._opt_ins: dict[Key, tuple[Target | Invalid, str]] = {}  # -> (target, observed digest)
        self._outputs: dict[Key, tuple[str, str]] = {}  # our output Secrets -> (owner uid, observed digest)
        # caches and token state
        self._credentials: dict[Key, CredentialEntry] = {}
        self._service_accounts: dict[Key, tuple[float, dict[str, str] | None]] = {}
        self._tokens: dict[MintKey, TokenState] = {}
        self._announced: set[tuple[str, str, str]] = set()  # targets told "TokenMinted" since their last failure
        self._conflicts: dict[Key, float] = {}  # foreign Secret in the way -> when to look again
        self.stats = Stats()
        self.informers = self._make_informers()

    # --- informers --------------------------------------------------------------------------------

    def _make_informers(self) -> list[Informer]:
        custom = client.CustomObjectsApi(self._api)
        group, version, plural = names.FLUX_SOURCE_GROUP, "v1", names.GITREPOSITORY_PLURAL
        ours = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY_VALUE}"
        informers = []
        scopes: list[str | None] = list(self._config.namespaces) or [None]
        for ns in scopes:
            where = "" if ns is None else f"/{ns}"
            list_git: Callable[..., Any]
            list_secrets: Callable[..., Any]
            git_args: tuple[str, ...]
            secret_args: tuple[str, ...]
            if ns is None:
                list_git, git_args = custom.list_cluster_custom_object, (group, version, plural)
                list_secrets, secret_args = self._core.list_secret_for_all_namespaces, ()
            else:
                list_git, git_args = custom.list_namespaced_custom_object, (group, version, ns, plural)
                list_secrets, secret_args = self._core.list_namespaced_secret, (ns,)
            informers += [
                Informer(
                    list_git,
                    self._on_gitrepo,
                    self._relisted(self._gitrepos, self._references, ns=ns),
                    what=f"gitrepositories{where}",
                    list_args=git_args,
                ),
                Informer(
                    list_secrets,
                    self._on_opt_in,
                    self._relisted(self._opt_ins, ns=ns),
                    what=f"secrets(opt-in){where}",
                    label_selector=names.LABEL_PROVIDER,
                    list_args=secret_args,
                ),
                Informer(
                    list_secrets,
                    self._on_output,
                    self._relisted(self._outputs, ns=ns),
                    what=f"secrets(ours){where}",
                    label_selector=ours,
                    list_args=secret_args,
                ),
            ]
        return informers

    def _relisted(self, *stores: dict[Key, Any], ns: str | None = None) -> Callable[[set[Key]], None]:
        """The on_relist callback of an informer feeding ``stores`` (within ``ns``, or everywhere): drop every
        key the fresh list no longer holds."""

        def prune(keys: set[Key]) -> None:
            for store in stores:
                for key in [k for k in store if (ns is None or k[0] == ns) and k not in keys]:
                    del store[key]
            self._touch()

        return prune

    def _touch(self) -> None:
        self._wake.set()

    def _on_gitrepo(self, kind: str, obj: dict[str, Any]) -> None:
        key = _key(obj)
        self._gitrepos.pop(key, None)
        self._references.pop(key, None)
        if kind != "DELETED":
            target = from_gitrepository(obj, self._config.policy)
            if target is not None:
                self._gitrepos[key] = target
            else:
                spec = obj.get("spec") or {}
                secret, url = (spec.get("secretRef") or {}).get("name"), spec.get("url")
                if secret and url:
                    self._references[key] = (key[0], str(secret), str(url))
        self._touch()

    def _on_opt_in(self, kind: str, obj: dict[str, Any]) -> None:
        key = _key(obj)
        target = from_opted_in_secret(obj) if kind != "DELETED" else None
        if target is None:
            self._opt_ins.pop(key, None)
        else:
            self._opt_ins[key] = (target, digest(obj, OPT_IN_KEYS))
        self._touch()

    def _on_output(self, kind: str, obj: dict[str, Any]) -> None:
        key = _key(obj)
        if kind == "DELETED":
            self._outputs.pop(key, None)
        else:
            owners = (obj.get("metadata") or {}).get("ownerReferences") or [{}]
            self._outputs[key] = (str(owners[0].get("uid", "")), digest(obj))
        self._touch()

    @property
    def synced(self) -> bool:
        return all(i.synced.is_set() for i in self.informers)

    # --- the loop ---------------------------------------------------------------------------------

    async def run(self) -> None:
        tasks = [asyncio.create_task(i.run()) for i in self.informers]
        try:
            await asyncio.gather(*(i.synced.wait() for i in self.informers))
            log.info("caches synced", extra={"gitrepositories": len(self._gitrepos), "opted_in": len(self._opt_ins)})
            failures = 0
            while True:
                self._wake.clear()
                try:
                    next_due = await self.reconcile()
                    failures = 0
                except TRANSPORT_ERRORS as err:
                    failures += 1
                    delay = min(0.2 * 2**failures, 10.0)
                    log.warning(
                        "apiserver unreachable; retrying", extra={"error": type(err).__name__, "retry_in_s": delay}
                    )
                    next_due = self._clock() + delay
                timeout = max(next_due - self._clock(), 0.05)
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that races the
                # wake-up, and this loop would then never stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                await asyncio.sleep(0.05)  # coalesce bursts of watch events into one pass
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._events.drain()

    def _targets(self) -> Iterator[Target | Invalid]:
        yield from self._gitrepos.values()
        referenced: dict[Key, list[str]] = {}
        for ns, secret, url in self._references.values():
            referenced.setdefault((ns, secret), []).append(url)
        for (ns, name), (target, _) in self._opt_ins.items():
            if isinstance(target, Target) and target.provider == names.PROVIDER_GITHUB:
                urls = tuple(sorted({*target.urls, *referenced.get((ns, name), ())}))
                if urls != target.urls:
                    target = dataclasses.replace(target, urls=urls)
            yield target

    async def reconcile(self) -> float:
        """One pass over everything; returns when the next pass is due at the latest."""
        now = self._clock()
        self.stats.passes += 1
        targets: list[Target] = []
        for item in self._targets():
            if isinstance(item, Invalid):
                self._event(item.kind, item.namespace, item.name, item.uid, "Warning", item.reason, item.message)
            else:
                targets.append(item)
        await self._refresh_credentials(targets, now)
        pairs: list[tuple[Target, Credential]] = []
        for target in targets:
            credential = await self._credential_for(target, now)
            if credential is not None:
                pairs.append((target, credential))
        plan = make_plan(pairs, self._config.github_token_scope, self._config.gcp_scopes)
        windows: dict[MintKey, float] = {}
        for target, _ in pairs:
            key = plan.assignment[target.key]
            windows[key] = max(windows.get(key, 0.0), target.consumer_window_s)
        due = [req for key, req in plan.requests.items() if self._is_due(key, now)]
        if due:
            await asyncio.gather(*(self._mint(req, windows.get(req.key, 0.0), plan, pairs) for req in due))
        await self._write_all(pairs, plan)
        for key in [k for k in self._tokens if k not in plan.requests]:
            del self._tokens[key]
        self._update_gauges(pairs)
        return self._next_due(now)

    # --- credentials ------------------------------------------------------------------------------

    async def _refresh_credentials(self, targets: list[Target], now: float) -> None:
        stale = {
            (t.namespace, t.credentials)
            for t in targets
            if t.credentials
            and (
                (entry := self._credentials.get((t.namespace, t.credentials))) is None
                or now - entry.read_at >= self._config.credentials_resync_s
            )
        }
        if stale:
            await asyncio.gather(*(self._read_credentials(ns, name, now) for ns, name in stale if name))
        wanted = {(t.namespace, t.credentials) for t in targets if t.credentials}
        for key in [k for k in self._credentials if k not in wanted]:
            del self._credentials[key]

    async def _read_credentials(self, namespace: str, name: str, now: float) -> None:
        async with self._api_gate:
            try:
                obj = await read_json(
                    self._core.read_namespaced_secret(
                        name, namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT_S
                    )
                )
            except TRANSPORT_ERRORS:
                return  # keep what we had; the next pass reads again
            except ApiException as err:
                if err.status == 404:
                    error: MintError = PermanentError(
                        f'credentials Secret "{name}" not found in namespace "{namespace}"', "CredentialsNotFound"
                    )
                    self._credentials[(namespace, name)] = CredentialEntry(now, error=error)
                else:
                    log.warning(
                        "credentials unreadable", extra={"namespace": namespace, "secret": name, "status": err.status}
                    )
                return
        try:
            data = decode_data(obj.get("data"))
            self._credentials[(namespace, name)] = CredentialEntry(now, holder=_DataHolder(data, name))
        except MintError as err:
            self._credentials[(namespace, name)] = CredentialEntry(now, error=err)

    async def _credential_for(self, target: Target, now: float) -> Credential | None:
        try:
            if target.provider == names.PROVIDER_AZURE:
                return await self._azure_identity(target, now)
            if not target.credentials:
                raise PermanentError("no credentials Secret named", "MissingKey")
            entry = self._credentials.get((target.namespace, target.credentials))
            if entry is None:
                return None  # unreadable for now; the next pass tries again
            if entry.error is not None:
                raise entry.error
            assert entry.holder is not None
            credential = entry.holder.parsed(target.provider)
            if isinstance(credential, GcpKey) and credential.info.get("type") == "external_account":
                self._check_identity_namespace(target, "a GCP external_account")
            return credential
        except MintError as err:
            self._fail_target(target, err)
            return None

    def _check_identity_namespace(self, target: Target, what: str) -> None:
        if target.namespace not in self._config.identity_namespaces:
            raise PermanentError(
                f'namespace "{target.namespace}" may not use the refresher\'s own identity ({what}); only '
                f"{', '.join(sorted(self._config.identity_namespaces))} may (--identity-namespaces)",
                "IdentityRefused",
            )

    async def _azure_identity(self, target: Target, now: float) -> Credential:
        data: dict[str, bytes] = {}
        if target.credentials:
            entry = self._credentials.get((target.namespace, target.credentials))
            if entry is not None and entry.holder is not None:
                data = entry.holder.data
        if target.service_account is None:
            self._check_identity_namespace(target, "Azure workload or managed identity")
            return azure_identity(target.namespace, None, None, data)
        key = (target.namespace, target.service_account)
        cached = self._service_accounts.get(key)
        if cached is None or now - cached[0] >= self._config.credentials_resync_s:
            try:
                obj = await read_json(
                    self._core.read_namespaced_service_account(
                        target.service_account,
                        target.namespace,
                        _preload_content=False,
                        _request_timeout=REQUEST_TIMEOUT_S,
                    )
                )
                cached = (now, dict((obj.get("metadata") or {}).get("annotations") or {}))
            except TRANSPORT_ERRORS:
                raise TemporaryError("ServiceAccount lookup failed: apiserver unreachable", "Unavailable") from None
            except ApiException as err:
                if err.status != 404:
                    raise TemporaryError(f"ServiceAccount lookup failed (HTTP {err.status})", "Unavailable") from None
                cached = (now, None)
            self._service_accounts[key] = cached
        if cached[1] is None:
            raise PermanentError(f'ServiceAccount "{target.service_account}" not found', "ServiceAccountNotFound")
        return azure_identity(target.namespace, target.service_account, cached[1], data)

    # --- minting ----------------------------------------------------------------------------------

    def _is_due(self, key: MintKey, now: float) -> bool:
        state = self._tokens.get(key)
        if state is None:
            return True
        if state.retry_at is None:
            return False  # permanent: a changed credential is a new key
        if state.error is not None:
            return now >= state.retry_at
        return now >= state.renew_at

    async def _mint(
        self, request: MintRequest, window: float, plan: Plan, pairs: list[tuple[Target, Credential]]
    ) -> None:
        key = request.key
        state = self._tokens.setdefault(key, TokenState())
        provider = self._providers[key.provider]
        started = time.perf_counter()
        async with self._mint_gates[key.provider]:
            try:
                token = await provider.mint(request)
            except MintError as err:
                state.failures += 1
                state.error = err
                state.retry_at = self._backoff.retry_at(self._clock(), state.failures, err, self._rng)
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
                for target, _ in pairs:
                    if plan.assignment.get(target.key) == key:
                        self._fail_target(target, err, keep_old=state.token is not None)
                return
        metrics.MINT_SECONDS.labels(key.provider).observe(time.perf_counter() - started)
        metrics.MINTS.labels(key.provider, "ok").inc()
        self.stats.mints += 1
        state.token = token
        state.failures = 0
        state.error = None
        state.retry_at = 0.0
        state.renew_at = renew_at(token.issued_at, token.expires_at, window, self._rng)
        log.info(
            "token minted",
            extra={
                "provider": key.provider,
                "credential": key.fingerprint,
                "expires_at": rfc3339(token.expires_at),
                "renew_in_s": round(state.renew_at - self._clock(), 1),
            },
        )

    def _fail_target(self, target: Target, err: MintError, keep_old: bool = False) -> None:
        self._announced.discard(target.key)
        suffix = "; the current token stays in place until it expires" if keep_old else ""
        message = f"{target.provider} token for Secret {target.secret}: {err}{suffix}"
        self._event(target.kind, target.namespace, target.name, target.uid, "Warning", _event_reason(err), message)

    # --- writing ----------------------------------------------------------------------------------

    async def _write_all(self, pairs: list[tuple[Target, Credential]], plan: Plan) -> None:
        now = self._clock()
        failures_before = self.stats.write_failures
        jobs = (
            (target, credential, state.token)
            for target, credential in pairs
            if (state := self._tokens.get(plan.assignment[target.key])) is not None
            and state.token is not None
            and state.token.expires_at > now  # nothing valid to write: never blank a Secret
        )

        async def worker() -> None:
            # A fixed pool pulling from one generator: memory stays flat however many Secrets there are.
            for target, credential, token in jobs:
                await self._write(target, credential, token, now)

        await asyncio.gather(*(worker() for _ in range(self._config.write_concurrency)))
        if self.stats.write_failures == failures_before:
            self.stats.last_converged = self._clock()
            metrics.LAST_SYNC.set(self.stats.last_converged)

    async def _write(self, target: Target, credential: Credential, token: Token, now: float) -> None:
        key = (target.namespace, target.secret)
        if target.kind == "Secret":
            desired = opt_in_apply(target, token)
            wanted = digest(desired, OPT_IN_KEYS)
            observed = self._opt_ins.get(key)
            if observed is not None and observed[1] == wanted:
                return self._announce(target, token)
            if await self._apply(target, desired, "opt-in"):
                if observed is not None:
                    self._opt_ins[key] = (observed[0], wanted)
                self._announce(target, token)
            return None
        if self._conflicts.get(key, 0.0) > now:
            return None
        desired = owned_secret(target, token, credential, self._config.azure_auth == "bearer")
        wanted = digest(desired)
        current = self._outputs.get(key)
        if current is not None and current[0] != target.uid:
            return self._conflict(target, "is owned by another object")
        if current is not None and current[1] == wanted:
            return self._announce(target, token)
        if current is None:
            ok = await self._create(target, desired)
        else:
            ok = await self._apply(target, desired, "owned")
        if ok:
            self._outputs[key] = (target.uid, wanted)
            self._announce(target, token)
        return None

    async def _create(self, target: Target, body: dict[str, Any]) -> bool:
        async with self._api_gate:
            try:
                await call_raw(
                    self._core.create_namespaced_secret(
                        target.namespace,
                        body,  # type: ignore[arg-type]  # the client serialises plain dicts as they are
                        field_manager=names.FIELD_MANAGER,
                        _preload_content=False,
                        _request_timeout=REQUEST_TIMEOUT_S,
                    )
                )
            except ApiException as err:
                if err.status == 409:
                    # Not in our informer, so not labelled ours: someone else's Secret. Never overwrite it.
                    self._conflict(target, "exists and is not managed by flux-passwordless")
                    return False
                return self._write_failed(target, err)
            except TRANSPORT_ERRORS as err:
                return self._unreachable(target, err)
        self.stats.writes += 1
        metrics.SECRET_WRITES.labels("created").inc()
        return True

    async def _apply(self, target: Target, body: dict[str, Any], what: str) -> bool:
        async with self._api_gate:
            try:
                await call_raw(
                    self._core.patch_namespaced_secret(  # type: ignore[call-arg]  # _content_type is accepted
                        target.secret,
                        target.namespace,
                        body,
                        field_manager=names.FIELD_MANAGER,
                        force=True,
                        _content_type=APPLY,
                        _preload_content=False,
                        _request_timeout=REQUEST_TIMEOUT_S,
                    )
                )
            except ApiException as err:
                return self._write_failed(target, err)
            except TRANSPORT_ERRORS as err:
                return self._unreachable(target, err)
        self.stats.writes += 1
        metrics.SECRET_WRITES.labels(f"applied-{what}").inc()
        return True

    def _write_failed(self, target: Target, err: ApiException) -> bool:
        self.stats.write_failures += 1
        metrics.SECRET_WRITES.labels("failed").inc()
        log.warning(
            "secret write failed", extra={"namespace": target.namespace, "secret": target.secret, "status": err.status}
        )
        self._event(
            target.kind,
            target.namespace,
            target.name,
            target.uid,
            "Warning",
            "SecretWriteFailed",
            f"writing Secret {target.secret} failed: HTTP {err.status} {err.reason}",
        )
        return False

    def _unreachable(self, target: Target, err: BaseException) -> bool:
        self.stats.write_failures += 1
        metrics.SECRET_WRITES.labels("failed").inc()
        log.warning(
            "secret write failed: apiserver unreachable",
            extra={"namespace": target.namespace, "secret": target.secret, "error": type(err).__name__},
        )
        return False

    def _conflict(self, target: Target, why: str) -> None:
        self.stats.conflicts += 1
        self._conflicts[(target.namespace, target.secret)] = self._clock() + self._config.credentials_resync_s
        self._event(
            target.kind,
            target.namespace,
            target.name,
            target.uid,
            "Warning",
            "SecretConflict",
            f'Secret "{target.secret}" {why}; it is left untouched: delete or rename it, or point this '
            "GitRepository's secretRef elsewhere",
        )

    def _announce(self, target: Target, token: Token) -> None:
        metrics.TOKEN_EXPIRY.record(target.namespace, target.secret, token.expires_at)
        if target.key in self._announced:
            return
        self._announced.add(target.key)
        self._event(
            target.kind,
            target.namespace,
            target.name,
            target.uid,
            "Normal",
            "TokenMinted",
            f"Secret {target.secret} holds a {target.provider} token valid until {rfc3339(token.expires_at)}",
        )

    def _event(self, kind: str, ns: str, name: str, uid: str, event_type: str, reason: str, message: str) -> None:
        self._events.emit(Involved(kind, ns, name, uid), event_type, reason, message)

    # --- bookkeeping ------------------------------------------------------------------------------

    def _update_gauges(self, pairs: list[tuple[Target, Credential]]) -> None:
        metrics.TOKEN_EXPIRY.retain({(t.namespace, t.secret) for t, _ in pairs})
        github = self._providers.get(names.PROVIDER_GITHUB)
        if isinstance(github, GitHubProvider):
            github.forget({c.fingerprint for _, c in pairs})
        metrics.SECRETS_MANAGED.labels("gitrepository").set(sum(1 for t, _ in pairs if t.kind == "GitRepository"))
        metrics.SECRETS_MANAGED.labels("opt-in").set(sum(1 for t, _ in pairs if t.kind == "Secret"))
        metrics.FAILING.clear()
        for key, state in self._tokens.items():
            if state.error is not None:
                metrics.FAILING.labels(key.provider, state.error.reason).inc()

    def _next_due(self, now: float) -> float:
        due = now + self._config.credentials_resync_s
        for state in self._tokens.values():
            if state.error is not None:
                if state.retry_at is not None:
                    due = min(due, state.retry_at)
            elif state.token is not None:
                due = min(due, state.renew_at)
        return due


class _DataHolder:
    """A credentials Secret's decoded data, parsed per provider on demand (a Secret may serve several)."""

    def __init__(self, data: dict[str, bytes], name: str) -> None:
        self.data = data
        self.name = name
        self._parsed: dict[str, Credential | MintError] = {}

    def parsed(self, provider: str) -> Credential:
        result = self._parsed.get(provider)
        if result is None:
            try:
                if provider == names.PROVIDER_GITHUB:
                    result = github_credential(self.data, self.name)
                else:
                    result = gcp_credential(self.data, self.name)
            except MintError as err:
                result = err
            self._parsed[provider] = result
        if isinstance(result, MintError):
            raise result
        return result


def _event_reason(err: MintError) -> str:
    if err.reason in ("InvalidSpec", "IdentityRefused", "CredentialsNotFound", "ServiceAccountNotFound"):
        return err.reason
    return "TokenMintFailed"
