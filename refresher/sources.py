"""What the refresher reads from the cluster to mint: credentials Secrets and ServiceAccounts, cached and
re-read every ``--credentials-resync`` (so a key rotation is seen), and the identity-namespace rule.

``credential_for(target)`` answers with a typed credential, None when it cannot tell yet (the apiserver did
not answer: the next pass asks again), or raises the ``MintError`` to report on the target.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kubernetes_asyncio.client.exceptions import ApiException

from common import names
from common.gitrepository import secret_warnings, split_reference
from common.kube import TRANSPORT_ERRORS
from common.objects import Key, meta
from refresher import grants
from refresher.cluster import Cluster
from refresher.config import RefresherConfig
from refresher.credentials import (
    AzureIdentity,
    Credential,
    GcpKey,
    Proxy,
    azure_identity,
    decode_data,
    gcp_credential,
    gcp_identity,
    github_credential,
    proxy_from_secret,
)
from refresher.errors import MintError, PermanentError
from refresher.grants import Grants, grants_of
from refresher.targets import Target

log = logging.getLogger(__name__)

READ_CONCURRENCY = 16
# The ServiceAccount annotations per-object identities read: all a cached ServiceAccount keeps (a tenant's may
# carry 256 KiB of others).
IDENTITY_ANNOTATIONS = (
    names.AZURE_ANNOTATION_CLIENT_ID,
    names.AZURE_ANNOTATION_TENANT_ID,
    names.GCP_ANNOTATION_WORKLOAD_IDENTITY_PROVIDER,
    names.GCP_ANNOTATION_SERVICE_ACCOUNT,
)


class CredentialData:
    """A credentials Secret's decoded data (only the keys it is read for: ``credentials.USED_KEYS``, which the
    spelling warnings need too), parsed per provider on demand (a Secret may serve several)."""

    def __init__(self, data: dict[str, bytes], name: str) -> None:
        self.data = data
        self.name = name
        self._parsed: dict[str, Credential | Proxy | MintError] = {}
        self._warnings: dict[str, list[str]] = {}

    def warnings(self, provider: str) -> list[str]:
        found = self._warnings.get(provider)
        if found is None:
            found = self._warnings[provider] = secret_warnings(provider, self.name, frozenset(self.data))
        return found

    def proxy(self) -> Proxy:
        result = self._parsed.get("proxy")
        if result is None:
            try:
                result = proxy_from_secret(self.data, self.name)
            except MintError as err:
                result = err
            self._parsed["proxy"] = result
        if isinstance(result, MintError):
            raise result
        assert isinstance(result, Proxy)
        return result

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
        assert not isinstance(result, Proxy)
        return result


@dataclass
class CredentialEntry:
    read_at: float
    data: CredentialData | None = None
    error: MintError | None = None
    grants: Grants | None = None  # a Secret of a credentials namespace: who may use it (refresher.grants)


@dataclass
class ServiceAccountEntry:
    read_at: float
    annotations: Mapping[str, str] | None  # None: it does not exist


class Sources:
    def __init__(self, cluster: Cluster, config: RefresherConfig) -> None:
        self._cluster = cluster
        self._config = config
        self._credentials: dict[Key, CredentialEntry] = {}
        self._service_accounts: dict[Key, ServiceAccountEntry] = {}
        # Secrets read at once: each read holds the whole Secret (up to 1 MiB) until it is decoded; a tenant
        # naming 1,000 distinct Secrets must not make the refresher hold 1,000 of them together.
        self._reads = asyncio.Semaphore(READ_CONCURRENCY)

    def _stale(self, read_at: float, now: float) -> bool:
        return now - read_at >= self._config.credentials_resync_s

    async def refresh(self, targets: Iterable[Target], now: float) -> None:
        """Read every credentials Secret these targets name that is not cached or is due a re-read; forget
        the ones no target names any more."""
        wanted = {
            located
            for t in targets
            for name in (t.credentials, t.proxy_secret)
            if name and (located := self._locate(t, name)) is not None
        }
        stale = [
            key for key in wanted if (entry := self._credentials.get(key)) is None or self._stale(entry.read_at, now)
        ]
        if stale:
            await asyncio.gather(*(self._read_credentials(ns, name, now) for ns, name in stale))
        for key in [k for k in self._credentials if k not in wanted]:
            del self._credentials[key]
        named = {(t.namespace, t.service_account) for t in targets if t.service_account}
        for key in [k for k in self._service_accounts if k not in named]:
            del self._service_accounts[key]

    def _locate(self, target: Target, reference: str) -> Key | None:
        """Where ``reference`` (``name``, or ``namespace/name``) lives; None for another namespace that holds no
        central credentials (another tenant's: never read)."""
        namespace, name = split_reference(reference)
        if namespace is None or namespace == target.namespace:
            return (target.namespace, name)
        if namespace in self._config.credentials_namespaces:
            return (namespace, name)
        return None

    async def _read_credentials(self, namespace: str, name: str, now: float) -> None:
        try:
            async with self._reads:
                obj = await self._cluster.read_secret(namespace, name)
        except TRANSPORT_ERRORS:
            return  # keep what we had; the next pass reads again
        except ApiException as err:
            log.warning("credentials unreadable", extra={"namespace": namespace, "secret": name, "status": err.status})
            return
        if obj is None:
            error = PermanentError(
                f'credentials Secret "{name}" not found in namespace "{namespace}"', "CredentialsNotFound"
            )
            self._credentials[(namespace, name)] = CredentialEntry(now, error=error)
            return
        grants = (
            grants_of(meta(obj).get("annotations") or {}) if namespace in self._config.credentials_namespaces else None
        )
        try:
            data = CredentialData(decode_data(obj.get("data")), name)
            self._credentials[(namespace, name)] = CredentialEntry(now, data=data, grants=grants)
        except MintError as err:
            self._credentials[(namespace, name)] = CredentialEntry(now, error=err, grants=grants)

    async def credential_for(self, target: Target, now: float) -> Credential | None:
        if target.provider == names.PROVIDER_AZURE:
            return await self._azure_identity(target, now)
        if target.provider == names.PROVIDER_GCP and target.service_account:
            annotations = await self._service_account(target, target.service_account, now)
            if annotations is None:
                return None  # unreadable for now; the next pass tries again
            return gcp_identity(target.namespace, target.service_account, annotations)
        if not target.credentials:
            raise PermanentError("no credentials Secret named", "MissingKey")
        reference = target.credentials
        located = self._locate(target, reference)
        if located is None:
            raise PermanentError(
                f'credentials "{reference}": namespace "{split_reference(reference)[0]}" holds no central credentials '
                f'(--credentials-namespaces); name a Secret of namespace "{target.namespace}", or a central one',
                "CredentialsNamespaceRefused",
            )
        central = located[0] != target.namespace
        entry = self._credentials.get(located)
        if entry is None:
            return None  # unreadable for now; the next pass tries again
        if central:
            if entry.grants is None:  # not found: told exactly as not granted
                raise grants.not_granted(reference, target.namespace)
            grants.check(entry.grants, reference, target, target.provider)
        if entry.error is not None:
            raise entry.error
        assert entry.data is not None
        credential = entry.data.parsed(target.provider)
        if central and not isinstance(credential, AzureIdentity):
            # Only the CA goes with a central credential's tokens: a client key of the platform's is not the
            # tenant's to hold.
            credential = dataclasses.replace(credential, tls={k: v for k, v in credential.tls.items() if k == "ca.crt"})
        if isinstance(credential, GcpKey) and credential.info.get("type") == "external_account":
            self._check_identity_namespace(target, "a GCP external_account")
        return credential

    def proxy_for(self, target: Target) -> Proxy | bool | None:
        """The proxy the target's mints go through (its ``spec.proxySecretRef``), None when it names none, False
        when its Secret could not be read yet (the next pass asks again); raises ``InvalidProxy`` or
        ``ProxyNotFound`` to report on the target."""
        if not target.proxy_secret:
            return None
        entry = self._credentials.get((target.namespace, target.proxy_secret))
        if entry is None:
            return False
        if entry.error is not None:
            if entry.error.reason == "CredentialsNotFound":
                raise PermanentError(
                    f'proxy Secret "{target.proxy_secret}" (spec.proxySecretRef) not found in namespace '
                    f'"{target.namespace}"',
                    "ProxyNotFound",
                )
            raise entry.error
        assert entry.data is not None
        return entry.data.proxy()

    def warnings(self, target: Target) -> list[str]:
        """Soft problems of the target's credentials Secret (seed-RFC key spellings): Warning Events."""
        entry = self._credentials.get((target.namespace, target.credentials or ""))
        if entry is None or entry.data is None or target.provider not in names.PROVIDERS_NEEDING_SECRET:
            return []
        return entry.data.warnings(target.provider)

    def _check_identity_namespace(self, target: Target, what: str) -> None:
        if target.namespace not in self._config.identity_namespaces:
            raise PermanentError(
                f'namespace "{target.namespace}" may not use the refresher\'s own identity ({what}); only '
                f"{', '.join(sorted(self._config.identity_namespaces))} may (--identity-namespaces)",
                "IdentityRefused",
            )

    async def _azure_identity(self, target: Target, now: float) -> Credential | None:
        data: dict[str, bytes] = {}
        if target.credentials:
            entry = self._credentials.get((target.namespace, target.credentials))
            if entry is not None and entry.data is not None:
                data = entry.data.data
        if target.service_account is None:
            self._check_identity_namespace(target, "Azure workload or managed identity")
            return azure_identity(target.namespace, None, None, data)
        annotations = await self._service_account(target, target.service_account, now)
        if annotations is None:
            return None  # unreadable for now; the next pass tries again
        return azure_identity(target.namespace, target.service_account, annotations, data)

    async def _service_account(self, target: Target, name: str, now: float) -> Mapping[str, str] | None:
        """The annotations of the target's ServiceAccount, cached and re-read as credentials Secrets are; None
        when it cannot be read yet. A failed re-read keeps what was read before (an apiserver restart must not
        stop, or restart, the tokens of every per-object identity)."""
        key = (target.namespace, name)
        cached = self._service_accounts.get(key)
        if cached is None or self._stale(cached.read_at, now):
            try:
                obj = await self._cluster.read_service_account(*key)
            except (*TRANSPORT_ERRORS, ApiException) as err:
                status = getattr(err, "status", None)
                log.warning(
                    "ServiceAccount unreadable", extra={"namespace": key[0], "service_account": name, "status": status}
                )
                if cached is None:
                    return None
            else:
                found = meta(obj).get("annotations") or {} if obj is not None else {}
                annotations = None if obj is None else {k: found[k] for k in IDENTITY_ANNOTATIONS if k in found}
                cached = self._service_accounts[key] = ServiceAccountEntry(now, annotations)
        if cached.annotations is None:
            raise PermanentError(f'ServiceAccount "{name}" not found', "ServiceAccountNotFound")
        return cached.annotations
