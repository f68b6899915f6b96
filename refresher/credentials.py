"""Reading a credentials Secret into a typed credential. Pure: Secret ``data`` in, credential or error out.

Both key spellings are accepted (Flux's wins when both are present). A credential's ``fingerprint`` is a hash
of everything that identifies it, so tokens are shared per credential and a key rotation changes it; the
raw key material never leaves the credential object and the provider that uses it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from common import names
from refresher.errors import PermanentError

GITHUB_DEFAULT_API = "https://api.github.com"


# The keys a credentials Secret is read for, and the most each may hold: only these are decoded and kept (a
# tenant's Secret may carry up to 1 MiB in any keys; 1,000 of them were held whole). A larger value is refused
# with a Warning Event (CredentialsTooLarge), never truncated.
USED_KEYS: frozenset[str] = frozenset(
    [
        *names.KEY_GITHUB_APP_ID,
        *names.KEY_GITHUB_INSTALLATION_ID,
        *names.KEY_GITHUB_INSTALLATION_OWNER,
        *names.KEY_GITHUB_PRIVATE_KEY,
        *names.KEY_GITHUB_BASE_URL,
        *names.KEY_GCP_SERVICE_ACCOUNT,
        *names.TLS_KEYS_COPIED,
        *names.KEYS_PROXY,
    ]
)
MAX_VALUE_BYTES = 64 * 1024  # an 8192-bit PEM key is ~6.5 KB, a service-account key file ~2.4 KB
MAX_CA_BYTES = 256 * 1024  # ca.crt may be a bundle (Debian's whole bundle is ~220 KB)


def decode_data(data: Mapping[str, str] | None) -> dict[str, bytes]:
    """The used keys of a Secret's ``data``, decoded and size-checked (the others are not kept: see USED_KEYS)."""
    out: dict[str, bytes] = {}
    for key, value in (data or {}).items():
        if key not in USED_KEYS:
            continue
        limit = MAX_CA_BYTES if key == "ca.crt" else MAX_VALUE_BYTES
        if len(value) > limit * 4 // 3 + 4:  # base64 is 4/3 of the value: refused before it is decoded
            raise PermanentError(
                f"Secret key {key} holds more than {limit} bytes: not a credential this refresher reads",
                "CredentialsTooLarge",
            )
        try:
            out[key] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise PermanentError(f"Secret key {key} is not valid base64") from None
    return out


def _first(data: Mapping[str, bytes], spellings: tuple[str, ...]) -> tuple[str, str] | None:
    for key in spellings:
        if key in data and data[key].strip():
            return key, data[key].decode("utf-8", "replace").strip()
    return None


def _fingerprint(*parts: str | bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def github_api_base(url: str | None) -> str:
    """api.github.com as is; a GitHub Enterprise Server host normalised to ``https://host/api/v3``."""
    if not url:
        return GITHUB_DEFAULT_API
    url = url.strip().rstrip("/")
    if url in ("https://api.github.com", "https://github.com"):
        return GITHUB_DEFAULT_API
    if url.endswith("/api/v3"):
        return url
    return url + "/api/v3"


@dataclass(frozen=True)
class GitHubApp:
    app_id: str
    private_key: bytes = field(repr=False)
    api_base: str
    installation_id: str | None
    installation_owner: str | None
    fingerprint: str
    tls: Mapping[str, bytes] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class GcpKey:
    info: Mapping[str, Any] = field(repr=False)
    username: str
    fingerprint: str
    tls: Mapping[str, bytes] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class AzureIdentity:
    """Who to be: the refresher itself (``service_account`` None) or a tenant's ServiceAccount."""

    namespace: str
    service_account: str | None
    tenant_id: str | None
    client_id: str | None
    fingerprint: str
    tls: Mapping[str, bytes] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class GcpIdentity:
    """Keyless Google for a tenant's ServiceAccount: its Kubernetes token, exchanged at Google's STS for the
    Workload Identity Federation provider named on it, then, where it names one, a Google service account's
    access token (IAM Credentials ``generateAccessToken``). No key anywhere."""

    namespace: str
    service_account: str
    audience: str  # //iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/R
    impersonate: str | None  # a Google service account's email
    username: str
    fingerprint: str
    tls: Mapping[str, bytes] = field(default_factory=dict, repr=False)


Credential = GitHubApp | GcpKey | GcpIdentity | AzureIdentity

# Flux's patterns for the ServiceAccount annotations (the email also goes into a URL path: nothing else passes)
_WORKLOAD_IDENTITY_PROVIDER = re.compile(
    r"projects/\d{1,30}/locations/global/workloadIdentityPools/[^/]{1,100}/providers/[^/]{1,100}"
)
_GCP_SERVICE_ACCOUNT = re.compile(r"[a-zA-Z0-9-]{1,100}@[a-zA-Z0-9-]{1,100}\.iam\.gserviceaccount\.com")


@dataclass(frozen=True)
class Proxy:
    """A GitRepository's ``spec.proxySecretRef`` in Flux's format (``address``, optional ``username`` and
    ``password``): the mints of that object's token go through it, as Flux's own GitHub App calls do."""

    address: str  # http(s)://host:port, no credentials in it (they are never put in a message)
    username: str = field(repr=False, default="")
    password: str = field(repr=False, default="")
    fingerprint: str = ""

    def url(self) -> str:
        """The address with the credentials in it, for clients that take a proxy URL (never logged)."""
        if not self.username:
            return self.address
        parts = urlsplit(self.address)
        auth = f"{quote(self.username, safe='')}:{quote(self.password, safe='')}@"
        return urlunsplit((parts.scheme, auth + parts.netloc, parts.path, parts.query, parts.fragment))


def proxy_from_secret(data: Mapping[str, bytes], secret: str) -> Proxy:
    """Flux's proxy Secret format, checked: errors name the Secret and the key, never a value."""
    address = data.get(names.KEY_PROXY_ADDRESS, b"").decode("utf-8", "replace").strip()
    if not address:
        raise PermanentError(
            f'proxy Secret "{secret}" lacks {names.KEY_PROXY_ADDRESS} (spec.proxySecretRef: Flux\'s format is '
            "address, and optional username and password)",
            "InvalidProxy",
        )
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise PermanentError(
            f'proxy Secret "{secret}" key {names.KEY_PROXY_ADDRESS} must be an http:// or https:// URL with a host '
            "and no credentials in it (put them in username and password)",
            "InvalidProxy",
        )
    username = data.get(names.KEY_PROXY_USERNAME, b"").decode("utf-8", "replace")
    password = data.get(names.KEY_PROXY_PASSWORD, b"").decode("utf-8", "replace")
    return Proxy(address, username, password, _fingerprint("proxy", address, username, password))


def _tls(data: Mapping[str, bytes]) -> dict[str, bytes]:
    return {k: data[k] for k in names.TLS_KEYS_COPIED if k in data}


def github_credential(data: Mapping[str, bytes], secret: str) -> GitHubApp:
    app = _first(data, names.KEY_GITHUB_APP_ID)
    key = _first(data, names.KEY_GITHUB_PRIVATE_KEY)
    missing = [s[0] for s, v in ((names.KEY_GITHUB_APP_ID, app), (names.KEY_GITHUB_PRIVATE_KEY, key)) if v is None]
    if missing:
        raise PermanentError(f'Secret "{secret}" lacks {" and ".join(missing)}', "MissingKey")
    assert app is not None
    assert key is not None
    if not app[1].isdigit():
        raise PermanentError(f'Secret "{secret}" key {app[0]} must be the numeric GitHub App ID', "InvalidKey")
    if "PRIVATE KEY" not in key[1]:
        raise PermanentError(f'Secret "{secret}" key {key[0]} must hold the App\'s PEM private key', "InvalidKey")
    installation = _first(data, names.KEY_GITHUB_INSTALLATION_ID)
    if installation is not None and not installation[1].isdigit():
        raise PermanentError(f'Secret "{secret}" key {installation[0]} must be a numeric installation ID', "InvalidKey")
    owner = _first(data, names.KEY_GITHUB_INSTALLATION_OWNER)
    base = _first(data, names.KEY_GITHUB_BASE_URL)
    api_base = github_api_base(base[1] if base else None)
    if not api_base.startswith("https://"):
        raise PermanentError(f'Secret "{secret}" key {base[0] if base else ""} must be an https:// URL', "InvalidKey")
    private_key = key[1].encode()
    return GitHubApp(
        app_id=app[1],
        private_key=private_key,
        api_base=api_base,
        installation_id=installation[1] if installation else None,
        installation_owner=owner[1] if owner else None,
        fingerprint=_fingerprint("github", app[1], private_key, api_base),
        tls=_tls(data),
    )


def gcp_credential(data: Mapping[str, bytes], secret: str) -> GcpKey:
    raw = _first(data, names.KEY_GCP_SERVICE_ACCOUNT)
    if raw is None:
        raise PermanentError(f'Secret "{secret}" lacks {names.KEY_GCP_SERVICE_ACCOUNT[0]}', "MissingKey")
    try:
        info = json.loads(raw[1])
    except ValueError:
        raise PermanentError(
            f'Secret "{secret}" key {raw[0]} is not JSON: paste the service-account key file as is',
            "InvalidKey",
        ) from None
    if not isinstance(info, dict) or info.get("type") not in ("service_account", "external_account"):
        raise PermanentError(
            f'Secret "{secret}" key {raw[0]} must be a "service_account" or "external_account" JSON',
            "InvalidKey",
        )
    if info["type"] == "service_account":
        absent = [k for k in ("client_email", "private_key", "token_uri") if not info.get(k)]
        if absent:
            raise PermanentError(f'Secret "{secret}" key {raw[0]} lacks {", ".join(absent)}', "InvalidKey")
        username = str(info["client_email"])
    else:
        username = str(
            info.get("service_account_impersonation_url", "").rpartition("/")[2].split(":")[0]
            or names.GCP_FEDERATED_USERNAME
        )
    return GcpKey(
        info=info,
        username=username,
        fingerprint=_fingerprint("gcp", json.dumps(info, sort_keys=True)),
        tls=_tls(data),
    )


def azure_identity(
    namespace: str,
    service_account: str | None,
    sa_annotations: Mapping[str, str] | None,
    data: Mapping[str, bytes] | None = None,
) -> AzureIdentity:
    tenant = client = None
    if service_account is not None:
        annotations = sa_annotations or {}
        tenant = annotations.get(names.AZURE_ANNOTATION_TENANT_ID)
        client = annotations.get(names.AZURE_ANNOTATION_CLIENT_ID)
        if not client:
            raise PermanentError(
                f'ServiceAccount "{service_account}" lacks annotation {names.AZURE_ANNOTATION_CLIENT_ID}',
                "MissingKey",
            )
    return AzureIdentity(
        namespace=namespace,
        service_account=service_account,
        tenant_id=tenant,
        client_id=client,
        fingerprint=_fingerprint(
            "azure", namespace if service_account else "", service_account or "", tenant or "", client or ""
        ),
        tls=_tls(data or {}),
    )


def gcp_identity(namespace: str, service_account: str, sa_annotations: Mapping[str, str]) -> GcpIdentity:
    """Keyless Google from a ServiceAccount's annotations (Flux's names, so one ServiceAccount serves Flux's own
    object-level identity for OCI and Buckets and our GitRepositories)."""
    provider = sa_annotations.get(names.GCP_ANNOTATION_WORKLOAD_IDENTITY_PROVIDER)
    if not provider:
        raise PermanentError(
            f'ServiceAccount "{service_account}" lacks annotation {names.GCP_ANNOTATION_WORKLOAD_IDENTITY_PROVIDER} '
            "(projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER): keyless Google "
            "needs the Workload Identity Federation provider that trusts this cluster",
            "MissingKey",
        )
    if not _WORKLOAD_IDENTITY_PROVIDER.fullmatch(provider):
        raise PermanentError(
            f'ServiceAccount "{service_account}" annotation {names.GCP_ANNOTATION_WORKLOAD_IDENTITY_PROVIDER}: '
            f"{provider[:200]!r} is not projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/"
            "PROVIDER",
            "InvalidKey",
        )
    email = sa_annotations.get(names.GCP_ANNOTATION_SERVICE_ACCOUNT) or None
    if email is not None and not _GCP_SERVICE_ACCOUNT.fullmatch(email):
        raise PermanentError(
            f'ServiceAccount "{service_account}" annotation {names.GCP_ANNOTATION_SERVICE_ACCOUNT}: {email[:200]!r} '
            "is not a Google service account email (NAME@PROJECT.iam.gserviceaccount.com)",
            "InvalidKey",
        )
    audience = f"//iam.googleapis.com/{provider}"
    return GcpIdentity(
        namespace=namespace,
        service_account=service_account,
        audience=audience,
        impersonate=email,
        username=email or names.GCP_FEDERATED_USERNAME,
        fingerprint=_fingerprint("gcp-identity", namespace, service_account, audience, email or ""),
    )
