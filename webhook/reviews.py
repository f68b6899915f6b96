"""Admission decisions for each resource: take a decoded request, call the pure policy, encode the answer.

Nothing here writes anything anywhere, so dry-run requests are answered exactly like real ones.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, cast

from common import names
from common.gitrepository import SecretLookup, credentials_secret_name, managed_provider
from common.translation import review_translation, translate_gitrepository
from webhook import admission
from webhook.config import WebhookConfig
from webhook.injectors import PodRejected
from webhook.jsonpatch import diff
from webhook.lookups import SecretKeyLookup, ServiceAccounts
from webhook.podpatch import Pod
from webhook.pods import PodView, mutate_pod

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Outcome:
    body: bytes
    result: str  # "allowed", "patched", "denied", "skipped"


async def review_gitrepository(
    review: admission.Review[dict[str, Any]], config: WebhookConfig, secrets: SecretKeyLookup
) -> Outcome:
    request = review.request
    assert request is not None  # admission.decode guarantees it
    if (
        request.operation not in ("CREATE", "UPDATE")
        or request.sub_resource
        or request.namespace in config.excluded_namespaces
    ):
        return Outcome(admission.allow(review), "skipped")
    assert request.object is not None
    policy = config.policy
    provider = managed_provider(request.object)
    old = request.old_object
    if (
        provider in names.SERVABLE_PROVIDERS
        and provider not in policy.managed_providers
        and old
        and managed_provider(old) == provider
    ):
        # Not written by this request (the admin narrowed --managed-providers since): keep it, so updates of
        # existing objects (Flux's finalizer, a label) still pass. The refresher warns that it is not served.
        policy = dataclasses.replace(policy, managed_providers=policy.managed_providers | {provider})
    translated = translate_gitrepository(request.object, policy)
    secret_name = credentials_secret_name(translated)
    keys = (
        await secrets.keys(request.namespace, secret_name)
        if secret_name and "/" not in secret_name and managed_provider(translated)  # a central one is not read
        else SecretLookup.UNKNOWN
    )
    verdict = review_translation(request.object, translated, policy, keys)
    if not verdict.allowed:
        log.info(
            "gitrepository denied",
            extra={"namespace": request.namespace, "gitrepository": request.name, "reason": verdict.message()},
        )
        return Outcome(admission.deny(review, verdict.message(), verdict.warnings), "denied")
    patch = diff(request.object, translated)
    return Outcome(admission.allow(review, patch, verdict.warnings), "patched" if patch else "allowed")


async def review_pod(review: admission.Review[PodView], config: WebhookConfig, accounts: ServiceAccounts) -> Outcome:
    request = review.request
    assert request is not None  # admission.decode guarantees it
    if request.operation != "CREATE" or request.sub_resource or request.namespace in config.excluded_namespaces:
        return Outcome(admission.allow(review), "skipped")
    pod = cast(Pod, request.object)
    assert pod is not None
    spec = pod.get("spec")
    sa_name = (spec.get("serviceAccountName") if isinstance(spec, dict) else None) or "default"
    sa = await accounts.annotations(request.namespace, sa_name)
    if not sa:
        return Outcome(admission.allow(review), "allowed")
    try:
        mutation = mutate_pod(pod, sa, config.pods)
    except PodRejected as err:
        return Outcome(admission.deny(review, str(err)), "denied")
    patch = mutation.patch
    return Outcome(admission.allow(review, patch), "patched" if patch else "allowed")


# What each endpoint decodes: a GitRepository whole, a Pod only as far as the injectors read it.
GITREPOSITORY_REVIEWS = admission.schema((names.GITREPOSITORY_KIND,), shape=admission.GitRepositoryShape)
POD_REVIEWS = admission.schema(("Pod",), pod_view=True)
