"""GitRepository policy: reading and validating the object. Pure functions, no IO (translation: ``common.translation``).

The webhook calls these on admission; the refresher re-checks objects that slipped past it with the same
code, so users see one set of messages. Messages follow Kubernetes field errors:
``<path>: <Kind>: "<value>": <what to do>``.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from common import names
from common.objects import meta

MAX_NAME = 253
MAX_LABEL = 63  # a namespace name: an RFC 1123 label
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
MAX_WARNING = 120
# A Secret name: a lowercase RFC 1123 subdomain (what the apiserver accepts for metadata.name).
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


@dataclass(frozen=True)
class FieldError:
    """One denial reason, rendered like Kubernetes' ``field.Error``."""

    path: str
    kind: str  # "Required value", "Unsupported value", "Invalid value"
    detail: str
    value: str | None = None

    def __str__(self) -> str:
        if self.value is None:
            return f"{self.path}: {self.kind}: {self.detail}"
        return f'{self.path}: {self.kind}: "{self.value}": {self.detail}'


@dataclass(frozen=True)
class Review:
    errors: list[FieldError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        return not self.errors

    def message(self) -> str:
        return "; ".join(str(e) for e in self.errors)


class SecretLookup(Enum):
    """What the caller knows of the credentials Secret when it has no keys to give."""

    MISSING = "missing"  # looked up: does not exist
    UNKNOWN = "unknown"  # not looked up, or the lookup failed: say nothing


SecretKeys = frozenset[str] | SecretLookup


@dataclass(frozen=True)
class PolicyConfig:
    managed_providers: frozenset[str] = frozenset(names.DEFAULT_MANAGED_PROVIDERS)

    def __post_init__(self) -> None:
        unknown = self.managed_providers - set(names.SERVABLE_PROVIDERS)
        if unknown:
            raise ValueError(
                f"--managed-providers: unsupported value(s) {sorted(unknown)}; "
                f"choose from {', '.join(names.SERVABLE_PROVIDERS)}"
            )


# Keys each provider needs in its credentials Secret: one tuple per need, any spelling in it satisfies it.
REQUIRED_KEYS: Mapping[str, tuple[tuple[str, ...], ...]] = {
    names.PROVIDER_GITHUB: (names.KEY_GITHUB_APP_ID, names.KEY_GITHUB_PRIVATE_KEY),
    names.PROVIDER_GCP: (names.KEY_GCP_SERVICE_ACCOUNT,),
}


def _key_list(provider: str) -> str:
    needs = [spellings[0] for spellings in REQUIRED_KEYS.get(provider, ())]
    if provider == names.PROVIDER_GITHUB:
        needs.insert(1, f"{names.KEY_GITHUB_INSTALLATION_ID[0]} (optional)")
    return ", ".join(needs[:-1]) + " and " + needs[-1] if len(needs) > 1 else "".join(needs)


# --- reading an object ----------------------------------------------------------------------------


def annotations_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return meta(obj).get("annotations") or {}


def spec_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("spec") or {}


def secret_ref_name(obj: Mapping[str, Any]) -> str | None:
    ref = spec_of(obj).get("secretRef") or {}
    name = ref.get("name") if isinstance(ref, Mapping) else None
    return name if isinstance(name, str) and name else None


def requested_provider(obj: Mapping[str, Any]) -> str:
    """spec.provider as the user wrote it (absent means generic)."""
    value = spec_of(obj).get("provider")
    return value if isinstance(value, str) and value else names.PROVIDER_GENERIC


def managed_provider(obj: Mapping[str, Any]) -> str | None:
    """The provider we serve for this object: exactly its ``flux-passwordless.io/provider`` annotation."""
    return annotations_of(obj).get(names.ANNOTATION_PROVIDER)


def credentials_secret_name(obj: Mapping[str, Any]) -> str | None:
    """The Secret holding the user's credentials, before or after translation."""
    if managed_provider(obj) is not None:
        return annotations_of(obj).get(names.ANNOTATION_CREDENTIALS_SECRET)
    return secret_ref_name(obj)


def output_secret_name(gitrepository_name: str) -> str:
    """``<name>-git-token``, shortened with a hash suffix where it would exceed 253 characters."""
    candidate = gitrepository_name + names.OUTPUT_SECRET_SUFFIX
    if len(candidate) <= MAX_NAME:
        return candidate
    digest = hashlib.sha256(gitrepository_name.encode()).hexdigest()[:10]
    keep = MAX_NAME - len(names.OUTPUT_SECRET_SUFFIX) - len(digest) - 1
    prefix = gitrepository_name[:keep].rstrip(".-")
    return f"{prefix}-{digest}{names.OUTPUT_SECRET_SUFFIX}"


# --- validation -----------------------------------------------------------------------------------


def did_you_mean(value: str, choices: Iterable[str]) -> str | None:
    options = list(choices)
    lowered = value.strip().lower()
    if lowered in options:
        return lowered
    close = difflib.get_close_matches(lowered, options, n=1, cutoff=0.6)
    return close[0] if close else None


def provider_error(path: str, value: str, allowed: Iterable[str]) -> FieldError:
    allowed = list(allowed)
    detail = "supported values: " + ", ".join(f'"{p}"' for p in allowed)
    suggestion = did_you_mean(value, allowed)
    if suggestion:
        detail += f'; did you mean "{suggestion}"?'
    return FieldError(path, "Unsupported value", detail, value)


def redact_url(url: str) -> str:
    """The URL with any secret in its userinfo replaced, for messages and logs.

    http(s) userinfo is dropped whole (a PAT pasted as the user or the password); an ssh login name
    (``git@``) is no secret and stays, but a password after it (``ssh://git:ghp_...@host``, or scp-like
    ``git:pass@host:path``) is replaced.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not at:
        return url
    if scheme in ("", "ssh", "git+ssh", "ssh+git"):
        user, colon, _ = userinfo.partition(":")
        userinfo = f"{user}:***" if colon else user
    else:
        userinfo = "***"
    return f"{scheme}{sep}{userinfo}@{host}{slash}{path}"


def split_reference(value: str) -> tuple[str | None, str]:
    """A credentials reference: ``name`` (a Secret of the object's own namespace) -> (None, name), or
    ``namespace/name`` (a central credential, granted by the platform admin) -> (namespace, name)."""
    namespace, slash, name = value.partition("/")
    return (namespace, name) if slash else (None, value)


def secret_name_error(path: str, value: str, central: bool = False) -> FieldError | None:
    """A field error when ``value`` cannot name a Secret of the object's own namespace (nor, with ``central``,
    ``namespace/name``: a central credential), else None."""
    namespace, name = split_reference(value) if central else (None, value)
    if (
        len(name) <= MAX_NAME
        and _SUBDOMAIN.fullmatch(name)
        and (namespace is None or (len(namespace) <= MAX_LABEL and _LABEL.fullmatch(namespace)))
    ):
        return None
    where = "in the same namespace, or namespace/name for a central credential" if central else "in the same namespace"
    return FieldError(
        path,
        "Invalid value",
        f"a Secret name is a lowercase RFC 1123 subdomain (a-z, 0-9, '-' and '.', at most 253 characters) {where}",
        value[:MAX_NAME],
    )


def _warn(text: str) -> str:
    return text if len(text) <= MAX_WARNING else text[: MAX_WARNING - 3] + "..."


def secret_warnings(provider: str, secret: str, keys: SecretKeys) -> list[str]:
    """Soft problems of a credentials Secret, from its key names: the same text at admission and in Events."""
    if keys is SecretLookup.UNKNOWN:
        return []
    if keys is SecretLookup.MISSING:
        return [_warn(f'Secret "{secret}" does not exist yet; provider "{provider}" starts once it does')]
    assert isinstance(keys, frozenset)
    warnings = []
    missing = [spellings[0] for spellings in REQUIRED_KEYS.get(provider, ()) if not keys & set(spellings)]
    if missing:
        warnings.append(_warn(f'Secret "{secret}" lacks {", ".join(missing)}, needed by provider "{provider}"'))
    for seed, flux in names.SEED_RFC_SPELLINGS.items():
        if seed in keys and flux not in keys:
            warnings.append(_warn(f'Secret "{secret}" key {seed} is the seed-RFC spelling; prefer {flux}'))
    return warnings


def validate_gitrepository(
    obj: Mapping[str, Any],
    config: PolicyConfig,
    secret_keys: SecretKeys = SecretLookup.UNKNOWN,
) -> Review:
    """Denials (field errors) and soft warnings for a GitRepository, translated or not."""
    errors: list[FieldError] = []
    annotated = managed_provider(obj)
    if annotated is not None and annotated not in config.managed_providers:
        # Only a translation of ours writes this annotation, and only for a provider this cluster serves:
        # anything else is hand-written (a typo, or a try at a provider the admin turned off).
        served_here = [p for p in names.SERVABLE_PROVIDERS if p in config.managed_providers]
        errors.append(provider_error(f"metadata.annotations[{names.ANNOTATION_PROVIDER}]", annotated, served_here))
        return Review(errors)
    requested = requested_provider(obj)
    if requested not in names.ALLOWED_PROVIDERS:
        errors.append(provider_error("spec.provider", requested, names.ALLOWED_PROVIDERS))
        return Review(errors)
    translated = annotated is not None and requested == names.PROVIDER_GENERIC
    provider = annotated if translated and annotated else requested
    served = translated or provider in config.managed_providers

    credentials = credentials_secret_name(obj) if translated else secret_ref_name(obj)
    path = f"metadata.annotations[{names.ANNOTATION_CREDENTIALS_SECRET}]" if translated else "spec.secretRef.name"
    service_account = spec_of(obj).get("serviceAccountName") or annotations_of(obj).get(
        names.ANNOTATION_SERVICE_ACCOUNT
    )
    sa_path = (
        "spec.serviceAccountName"
        if spec_of(obj).get("serviceAccountName")
        else f"metadata.annotations[{names.ANNOTATION_SERVICE_ACCOUNT}]"
    )
    keyless = bool(service_account) and provider == names.PROVIDER_GCP
    # a re-applied manifest brings back our own output Secret as its secretRef: not a key Secret
    own_output = credentials == output_secret_name(str(meta(obj).get("name", "")))
    if keyless and credentials and served and not own_output:
        errors.append(
            FieldError(
                sa_path,
                "Invalid value",
                f'provider "gcp" takes a key Secret ({path}) or a ServiceAccount (keyless), not both: drop one',
                str(service_account),
            )
        )
    elif provider in names.PROVIDERS_NEEDING_SECRET and not credentials and not keyless:
        errors.append(
            FieldError(
                path.removesuffix(".name"),
                "Required value",
                f'provider "{provider}" needs a secretRef naming a Secret with {_key_list(provider)}'
                + (", or spec.serviceAccountName (keyless)" if provider == names.PROVIDER_GCP else ""),
            )
        )
    elif (
        served
        and credentials
        and (bad_name := secret_name_error(path, credentials, central=provider in names.PROVIDERS_NEEDING_SECRET))
        is not None
    ):
        errors.append(bad_name)
    if service_account and served and provider not in names.PROVIDERS_WITH_SERVICE_ACCOUNT:
        errors.append(
            FieldError(
                sa_path,
                "Invalid value",
                f'provider "{provider}" takes its credentials from a Secret; only "azure" and "gcp" use a '
                "ServiceAccount",
                str(service_account),
            )
        )
    url = spec_of(obj).get("url")
    if served and isinstance(url, str) and not url.startswith("https://"):
        errors.append(
            FieldError(
                "spec.url",
                "Invalid value",
                f'provider "{provider}" is served with short-lived HTTPS tokens, which work only over '
                f"https://; use the repository's https:// URL",
                redact_url(url),
            )
        )
    warnings = secret_warnings(provider, credentials, secret_keys) if credentials and served else []
    return Review(errors, warnings)
