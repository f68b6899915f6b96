"""The webhook's pure cores as fuzz targets: one body in, every property checked. Shared by the hypothesis
properties (tests/unit/test_properties.py, in ``make test``) and the coverage-guided atheris target
(tests/fuzz/fuzz_reviews.py, ``make fuzz``).

The properties, for any body an endpoint can be sent:
- decoding raises nothing but ``BadReview`` (the handler's 400);
- a decoded review is answered (an Outcome whose body is an AdmissionReview answering its uid), or refused with
  ``PodRejected`` (a denial); nothing else escapes;
- a patch, applied, gives an object whose second review patches nothing.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import jsonpatch

from common import names
from common.gitrepository import PolicyConfig
from webhook import admission
from webhook.config import from_args
from webhook.reviews import GITREPOSITORY_REVIEWS, POD_REVIEWS, Outcome, review_gitrepository, review_pod

CONFIG = replace(
    from_args([]),
    pods=replace(from_args([]).pods, azure_injection="full", aws_injection="full", gke_node_selector=True),
    policy=PolicyConfig(frozenset(names.SERVABLE_PROVIDERS)),
)

SERVICE_ACCOUNT = {
    names.AZURE_ANNOTATION_CLIENT_ID: "11111111-2222-3333-4444-555555555555",
    names.AWS_ANNOTATION_ROLE_ARN: "arn:aws:iam::111122223333:role/flux",
    names.GCP_ANNOTATION_SERVICE_ACCOUNT: "flux@project.iam.gserviceaccount.com",
}


class Accounts:
    """Every ServiceAccount carries ``annotations`` (all three clouds by default)."""

    synced = True

    def __init__(self, annotations: Mapping[str, str] = SERVICE_ACCOUNT) -> None:
        self._annotations = annotations

    async def annotations(self, namespace: str, name: str) -> Mapping[str, str]:
        return self._annotations


class Secrets:
    """No Secret reads (the webhook's default)."""

    async def keys(self, namespace: str, name: str) -> Any:
        from common.gitrepository import SecretLookup

        return SecretLookup.UNKNOWN


def _whole(body: bytes) -> Any:
    """The body as Python's json reads it; None when it holds invalid UTF-8 in a field the decoder skipped (msgspec
    does not read what it skips, and the answer never quotes it)."""
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        return None


def _again(body: bytes, response: Mapping[str, Any], *, as_update: bool) -> bytes | None:
    """The review again, its object as the answer's patch left it (``as_update``: an UPDATE of itself)."""
    sent = _whole(body)
    if sent is None:
        return None
    request = sent["request"]
    patched = _patched(request["object"], response)
    changes = {"operation": "UPDATE", "oldObject": patched} if as_update else {}
    return json.dumps({**sent, "request": {**request, "object": patched, **changes}}).encode()


def _answer(outcome: Outcome, uid: str) -> dict[str, Any]:
    answer = json.loads(outcome.body)
    response = answer["response"]
    assert response["uid"] == uid, (response, uid)
    assert answer["kind"] == "AdmissionReview"
    return response  # type: ignore[no-any-return]


def _patched(obj: Any, response: Mapping[str, Any]) -> Any:
    patch = json.loads(base64.b64decode(response["patch"])) if "patch" in response else []
    return jsonpatch.apply_patch(obj, patch) if patch else obj


async def review_pod_body(body: bytes, accounts: Accounts | None = None) -> str:
    """Send ``body`` to the pod endpoint's core; "400", "denied", "allowed" or "patched" (then checked stable)."""
    accounts = accounts or Accounts()
    try:
        review = admission.decode(body, POD_REVIEWS)
    except admission.BadReview:
        return "400"
    from webhook.injectors import PodRejected

    try:
        outcome = await review_pod(review, CONFIG, accounts)
    except PodRejected:
        return "denied"
    assert review.request is not None
    response = _answer(outcome, review.request.uid)
    if outcome.result != "patched":
        return outcome.result
    # Applied to the whole object as sent (the view decodes only part of it: the paths must hold for the whole).
    again = _again(body, response, as_update=False)
    if again is None:
        return "patched"
    second = await review_pod(admission.decode(again, POD_REVIEWS), CONFIG, accounts)
    assert second.result != "patched", "a second pass over the mutated pod patched again"
    return "patched"


async def review_gitrepository_body(body: bytes) -> str:
    """Send ``body`` to the GitRepository endpoint's core; "400", "denied", "allowed" or "patched" (then checked
    stable: the translated object, reviewed as an UPDATE of itself, patches nothing)."""
    try:
        review = admission.decode(body, GITREPOSITORY_REVIEWS)
    except admission.BadReview:
        return "400"
    secrets: Any = Secrets()
    outcome = await review_gitrepository(review, CONFIG, secrets)
    assert review.request is not None
    response = _answer(outcome, review.request.uid)
    if outcome.result != "patched":
        return outcome.result
    again = _again(body, response, as_update=True)
    if again is None:
        return "patched"
    second = await review_gitrepository(admission.decode(again, GITREPOSITORY_REVIEWS), CONFIG, secrets)
    assert second.result != "patched", "a second pass over the translated GitRepository patched again"
    return "patched"


def check_body(body: bytes) -> None:
    """One fuzz input through both endpoints' cores (the atheris target)."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(review_pod_body(body))
        loop.run_until_complete(review_gitrepository_body(body))
    finally:
        loop.close()
