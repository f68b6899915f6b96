"""What each watched object asks of us: a ``Target`` (an output Secret to keep filled). Pure.

Two sources:
- a GitRepository carrying ``flux-passwordless.io/provider`` (translated by the webhook): the output Secret is
  its ``spec.secretRef``, owned by the GitRepository;
- a Secret labelled ``flux-passwordless.io/provider`` (opt-in): the Secret itself; we only take over
  ``username`` and ``password``.
"""

from __future__ import annotations

import functools
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from common import names
from common.gitrepository import (
    MAX_NAME,
    FieldError,
    PolicyConfig,
    managed_provider,
    provider_error,
    secret_name_error,
    validate_gitrepository,
)
from common.objects import meta
from refresher.sharding import shard_labels

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
DEFAULT_TIMEOUT_S = 60.0


def parse_duration(value: Any, default: float) -> float:
    """A Go duration as Flux writes them (``1m30s``, ``10m``); ``default`` when absent or malformed."""
    if not isinstance(value, str) or not value:
        return default
    parts = _DURATION.findall(value)
    if not parts or "".join(a + b for a, b in parts) != value:
        return default
    return sum(float(amount) * _UNITS[unit] for amount, unit in parts)


# What asked for the token: a translated GitRepository (we own its output Secret) or an opted-in Secret.
Kind = Literal["GitRepository", "Secret"]
TargetKey = tuple[Kind, str, str]  # (kind, namespace, name)


@dataclass(frozen=True)
class Target:
    kind: Kind
    namespace: str
    name: str  # the object's name
    uid: str
    provider: str
    secret: str  # the output Secret's name
    credentials: str | None  # the credentials Secret's name (github, gcp; optional for azure)
    urls: tuple[str, ...] = ()  # repositories served (GitHub token scoping)
    consumer_window_s: float = 0.0  # renew at least this long before expiry
    permissions: Mapping[str, str] = field(default_factory=dict)
    service_account: str | None = None  # azure per-object identity
    proxy_secret: str | None = None  # spec.proxySecretRef.name: the mints of its token go through that proxy
    shard_labels: tuple[tuple[str, str], ...] = ()  # carried onto the output Secret (refresher.sharding)

    @functools.cached_property
    def key(self) -> TargetKey:
        return (self.kind, self.namespace, self.name)


@dataclass(frozen=True)
class Invalid:
    """An object we cannot serve, with the message users see (Warning Event, same text as the webhook)."""

    kind: Kind
    namespace: str
    name: str
    uid: str
    reason: str
    message: str


# GitHub permission levels, weakest first: an allowlist entry allows its level and every weaker one.
LEVELS = {"read": 1, "write": 2, "admin": 3}
PERMISSIONS_PATH = f"metadata.annotations[{names.ANNOTATION_GITHUB_PERMISSIONS}]"


def permissions_error(requested: Mapping[str, str], allowed: Mapping[str, str]) -> FieldError | None:
    beyond = [
        f"{scope}:{level}"
        for scope, level in sorted(requested.items())
        if LEVELS.get(level, len(LEVELS) + 1) > LEVELS.get(allowed.get(scope, ""), 0)
    ]
    if not beyond:
        return None
    allowlist = ",".join(f"{k}:{v}" for k, v in sorted(allowed.items()))
    return FieldError(
        PERMISSIONS_PATH,
        "Forbidden",
        f"beyond what this cluster allows ({allowlist}); ask the admin to extend the refresher's "
        "--github-permissions, or ask for less",
        ",".join(beyond),
    )


@functools.lru_cache(maxsize=256)
def parse_permissions(value: str | None) -> Mapping[str, str]:
    """``contents:write,pull_requests:read`` -> {"contents": "write", ...}; contents:read by default.

    Read-only and shared: 10,000 GitRepositories with the same annotation hold one mapping between them.
    """
    permissions = {"contents": "read"}
    for item in (value or "").split(","):
        item = item.strip()
        if not item:
            continue
        scope, _, level = item.partition(":")
        permissions[scope.strip()] = (level.strip() or "read").lower()
    return types.MappingProxyType(permissions)


@dataclass(frozen=True)
class Rules:
    """What the admin allows: the GitRepository policy (managed providers) and the GitHub permissions a token
    may carry (``--github-permissions``)."""

    policy: PolicyConfig = field(default_factory=PolicyConfig)
    github_permissions: Mapping[str, str] = field(
        default_factory=lambda: parse_permissions(names.DEFAULT_GITHUB_PERMISSIONS)
    )
    shard_keys: tuple[str, ...] = ()  # the label keys --watch-label-selector names


# What one tenant object may make the refresher hold (docs/security.md, "what a tenant can make us hold"): the
# fields a target keeps, each capped. Past a cap the object is Invalid (reason TooLarge, a Warning Event that
# names the field and the cap, never the value) and nothing of the value is kept.
MAX_FIELD_BYTES: Mapping[str, int] = {
    "spec.url": 2048,
    f"metadata.annotations[{names.ANNOTATION_GITHUB_PERMISSIONS}]": 1024,
    f"metadata.annotations[{names.ANNOTATION_REPOSITORIES}]": 64 * 1024,  # GitHub scopes at most 500 repositories
    f"metadata.annotations[{names.ANNOTATION_CREDENTIALS_SECRET}]": MAX_NAME,
    f"metadata.annotations[{names.ANNOTATION_SERVICE_ACCOUNT}]": MAX_NAME,
    "spec.serviceAccountName": MAX_NAME,
    "spec.secretRef.name": MAX_NAME,
    "spec.proxySecretRef.name": MAX_NAME,
}
MAX_MESSAGE = 1024  # an Invalid's message (what its Warning Event says)


def _oversized(metadata: Mapping[str, Any], spec: Mapping[str, Any]) -> FieldError | None:
    annotations = metadata.get("annotations") or {}
    ref = spec.get("secretRef")
    values = {
        "spec.url": spec.get("url"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "spec.secretRef.name": ref.get("name") if isinstance(ref, Mapping) else None,
        "spec.proxySecretRef.name": _proxy_secret(spec),
    }
    for path in MAX_FIELD_BYTES:
        if path.startswith("metadata.annotations["):
            values[path] = annotations.get(path[len("metadata.annotations[") : -1])
    for path, value in values.items():
        if isinstance(value, str) and len(value) > MAX_FIELD_BYTES[path]:
            return FieldError(path, "Too long", f"must have at most {MAX_FIELD_BYTES[path]} bytes ({len(value)} given)")
    return None


def _proxy_secret(spec: Mapping[str, Any]) -> str | None:
    ref = spec.get("proxySecretRef")
    name = ref.get("name") if isinstance(ref, Mapping) else None
    return name if isinstance(name, str) and name else None


def _invalid(kind: Kind, namespace: str, name: str, uid: str, reason: str, message: str) -> Invalid:
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    return Invalid(kind, namespace, name, uid, reason, message)


def from_gitrepository(obj: Mapping[str, Any], rules: Rules) -> Target | Invalid | None:
    """None when the object is not ours to serve (no provider annotation)."""
    provider = managed_provider(obj)
    if provider is None:
        return None
    metadata, spec = meta(obj), obj.get("spec") or {}
    namespace, name, uid = (
        str(metadata.get("namespace", "")),
        str(metadata.get("name", "")),
        str(metadata.get("uid", "")),
    )
    if (too_large := _oversized(metadata, spec)) is not None:
        return _invalid("GitRepository", namespace, name, uid, "TooLarge", str(too_large))
    review = validate_gitrepository(obj, rules.policy)
    if not review.allowed:
        return _invalid("GitRepository", namespace, name, uid, "InvalidSpec", review.message())
    secret = (spec.get("secretRef") or {}).get("name")
    if not secret:
        error = FieldError(
            "spec.secretRef", "Required value", "a managed GitRepository reads its token from spec.secretRef"
        )
        return Invalid("GitRepository", namespace, name, uid, "InvalidSpec", str(error))
    interval = parse_duration(spec.get("interval"), 60.0)
    timeout = parse_duration(spec.get("timeout"), DEFAULT_TIMEOUT_S)
    annotations = metadata.get("annotations") or {}
    permissions = parse_permissions(annotations.get(names.ANNOTATION_GITHUB_PERMISSIONS))
    if provider == names.PROVIDER_GITHUB and (refused := permissions_error(permissions, rules.github_permissions)):
        return _invalid("GitRepository", namespace, name, uid, "PermissionsRefused", str(refused))
    return Target(
        kind="GitRepository",
        namespace=namespace,
        name=name,
        uid=uid,
        provider=provider,
        secret=str(secret),
        credentials=annotations.get(names.ANNOTATION_CREDENTIALS_SECRET),
        urls=(str(spec["url"]),) if spec.get("url") else (),
        consumer_window_s=2 * (interval + timeout),
        permissions=permissions,
        service_account=annotations.get(names.ANNOTATION_SERVICE_ACCOUNT) or spec.get("serviceAccountName") or None,
        proxy_secret=_proxy_secret(spec),
        shard_labels=shard_labels(metadata.get("labels") or {}, rules.shard_keys) if rules.shard_keys else (),
    )


def from_opted_in_secret(obj: Mapping[str, Any], rules: Rules) -> Target | Invalid | None:
    metadata = meta(obj)
    labels = metadata.get("labels") or {}
    provider = labels.get(names.LABEL_PROVIDER)
    if provider is None:
        return None
    namespace, name, uid = (
        str(metadata.get("namespace", "")),
        str(metadata.get("name", "")),
        str(metadata.get("uid", "")),
    )
    annotations = metadata.get("annotations") or {}
    credentials = annotations.get(names.ANNOTATION_CREDENTIALS_SECRET)
    credentials_path = f"metadata.annotations[{names.ANNOTATION_CREDENTIALS_SECRET}]"
    permissions = parse_permissions(annotations.get(names.ANNOTATION_GITHUB_PERMISSIONS))
    served = [p for p in names.SERVABLE_PROVIDERS if p in rules.policy.managed_providers]
    error: FieldError | None = None
    refused: FieldError | None = None
    reason = "InvalidSpec"
    if (too_large := _oversized(metadata, {})) is not None:
        reason, error = "TooLarge", too_large
    elif labels.get(names.LABEL_MANAGED_BY) == names.MANAGED_BY_VALUE:
        # One of our own outputs: it already holds a token, and two writers on one Secret would fight.
        reason = "OptInRefused"
        error = FieldError(
            f"metadata.labels[{names.LABEL_PROVIDER}]",
            "Forbidden",
            "this Secret is written by flux-passwordless for its GitRepository already; remove the label",
        )
    elif provider not in served:
        error = provider_error(f"metadata.labels[{names.LABEL_PROVIDER}]", provider, served)
    elif provider in names.PROVIDERS_NEEDING_SECRET and not credentials:
        error = FieldError(
            credentials_path,
            "Required value",
            f'provider "{provider}" needs the name of the Secret holding its credentials',
        )
    elif credentials == name:
        error = FieldError(
            credentials_path,
            "Invalid value",
            "the credentials must live in another Secret (this one receives the token)",
            name,
        )
    elif credentials and (bad_name := secret_name_error(credentials_path, credentials, central=True)) is not None:
        error = bad_name
    elif provider == names.PROVIDER_GITHUB and (refused := permissions_error(permissions, rules.github_permissions)):
        reason, error = "PermissionsRefused", refused
    if error is not None:
        return _invalid("Secret", namespace, name, uid, reason, str(error))
    return Target(
        kind="Secret",
        namespace=namespace,
        name=name,
        uid=uid,
        provider=provider,
        secret=name,
        credentials=credentials,
        urls=tuple(u.strip() for u in annotations.get(names.ANNOTATION_REPOSITORIES, "").split(",") if u.strip()),
        permissions=permissions,
    )
