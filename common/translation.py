"""Provider translation: what Flux should store for a GitRepository whose provider we serve, and the webhook's
whole decision (validate what the user wrote, then what would be stored). Pure functions, no IO."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common import names
from common.gitrepository import (
    PolicyConfig,
    Review,
    SecretKeys,
    SecretLookup,
    managed_provider,
    output_secret_name,
    requested_provider,
    secret_ref_name,
    spec_of,
    validate_gitrepository,
)
from common.objects import meta


def translate_gitrepository(obj: Mapping[str, Any], config: PolicyConfig) -> dict[str, Any]:
    """The object Flux should store: a managed provider rewritten to generic + our own basic-auth Secret.

    Every field Flux's CRD forbids next to ``provider: generic`` moves to an annotation (today
    ``spec.serviceAccountName``), so the stored object is valid under the CRD of every Flux version we support.

    Returns a new object; ``obj`` is not modified. Copy-on-write: only the maps it edits (the object,
    metadata, annotations, spec, secretRef) are copied, every other subtree is shared with ``obj``, so a
    large object costs what the edit costs (and ``webhook.jsonpatch.diff`` skips what is shared).
    Idempotent: translating the result changes nothing, and re-applying the user's manifest on top of a
    translated object translates back to the same thing.
    """
    result: dict[str, Any] = dict(obj)
    requested = requested_provider(obj)
    annotated = managed_provider(obj)
    if requested in config.managed_providers:
        provider = requested
    elif requested == names.PROVIDER_GENERIC and annotated in config.managed_providers:
        provider = annotated  # already translated (or secretRef edited): keep serving it
    else:
        if annotated is not None:
            _hand_back(result)
        return result
    assert provider is not None
    metadata = result["metadata"] = dict(meta(obj))
    annotations = metadata["annotations"] = dict(metadata.get("annotations") or {})
    spec = result["spec"] = dict(spec_of(obj))
    output = output_secret_name(str(metadata.get("name", "")))
    current_ref = secret_ref_name(result)
    annotations[names.ANNOTATION_PROVIDER] = provider
    if current_ref is not None and current_ref != output:
        annotations[names.ANNOTATION_CREDENTIALS_SECRET] = current_ref
    elif current_ref is None and annotated is None:
        annotations.pop(names.ANNOTATION_CREDENTIALS_SECRET, None)
    service_account = spec.pop("serviceAccountName", None)
    if service_account:
        annotations[names.ANNOTATION_SERVICE_ACCOUNT] = service_account
    spec["provider"] = names.PROVIDER_GENERIC
    spec["secretRef"] = {**(spec.get("secretRef") or {}), "name": output}
    return result


def _hand_back(result: dict[str, Any]) -> None:
    """The user chose a provider we do not serve: drop our annotations, restore their secretRef and
    serviceAccountName. ``result`` is a shallow copy: the maps edited here are copied first."""
    metadata = result["metadata"] = dict(meta(result))
    annotations = metadata["annotations"] = dict(metadata.get("annotations") or {})
    annotations.pop(names.ANNOTATION_PROVIDER, None)
    credentials = annotations.pop(names.ANNOTATION_CREDENTIALS_SECRET, None)
    service_account = annotations.pop(names.ANNOTATION_SERVICE_ACCOUNT, None)
    if service_account and not spec_of(result).get("serviceAccountName"):
        result["spec"] = {**spec_of(result), "serviceAccountName": service_account}
    if secret_ref_name(result) == output_secret_name(str(metadata.get("name", ""))):
        spec = result["spec"] = dict(spec_of(result))
        if credentials:
            spec["secretRef"] = {**spec["secretRef"], "name": credentials}
        else:
            spec.pop("secretRef", None)
    if not annotations:
        metadata.pop("annotations", None)


def review_translation(
    obj: Mapping[str, Any],
    translated: Mapping[str, Any],
    config: PolicyConfig,
    secret_keys: SecretKeys = SecretLookup.UNKNOWN,
) -> Review:
    """Validate what the user asked for (so messages use their field paths), then what would be stored."""
    review = validate_gitrepository(obj, config, secret_keys)
    if review.allowed:
        review = validate_gitrepository(translated, config, secret_keys)
    return review


def admit_gitrepository(
    obj: Mapping[str, Any], config: PolicyConfig, secret_keys: SecretKeys = SecretLookup.UNKNOWN
) -> tuple[Review, dict[str, Any]]:
    """The webhook's whole decision: the review and the object to store."""
    translated = translate_gitrepository(obj, config)
    return review_translation(obj, translated, config, secret_keys), translated
