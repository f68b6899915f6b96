"""What a hostile caller (or a tenant's object relayed by the apiserver) sends: label floods, deep nesting,
an apiserver that drops our lookups. Each answer is a clear 400 or the best answer available, never a 500."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client

from common import names
from common.gitrepository import PolicyConfig, SecretLookup
from common.translation import translate_gitrepository
from tests.support.reviews import gitrepository_review
from tests.support.webhook import RunningWebhook, post, running_webhook
from webhook import admission
from webhook import config as webhook_config
from webhook.lookups import SecretKeyLookup, ServiceAccountCache
from webhook.metrics import METRICS
from webhook.reviews import GITREPOSITORY_REVIEWS, review_gitrepository


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for i in range(depth):
        value = {"a": value} if i % 2 else [value]
    return value


def nested_json(depth: int) -> bytes:
    """``nested(depth)`` as JSON, built without recursion (json.dumps itself gives up past ~1,000 levels)."""
    opening = "".join('{"a":' if i % 2 else "[" for i in reversed(range(depth)))
    closing = "".join("}" if i % 2 else "]" for i in range(depth))
    return f'{opening}"leaf"{closing}'.encode()


async def test_operation_strings_never_become_metric_labels(
    http: aiohttp.ClientSession, webhook: RunningWebhook
) -> None:
    """Regression: 150 reviews with 1 MB operation strings used to add 139 MB and a 150 MB /metrics."""
    for i in range(40):
        review = gitrepository_review({"url": "https://example.com/r"}, operation=f"{i:04d}" + "X" * 50_000)
        status, _ = await post(http, "/mutate/gitrepository", review)
        assert status == 200
    async with aiohttp.ClientSession() as plain, plain.get(webhook.metrics_url) as resp:
        text = await resp.text()
    assert len(text) < 200_000
    assert "XXXX" not in text
    assert 'operation="other"' in text
    assert {op for _, op, _ in METRICS.requests} <= {"CREATE", "UPDATE", "DELETE", "CONNECT", "other", "unknown"}


@pytest.mark.parametrize("depth", [150, 2_000, 50_000])
async def test_deeply_nested_gitrepository_is_a_400_naming_the_path(http: aiohttp.ClientSession, depth: int) -> None:
    review = gitrepository_review({"url": "https://github.com/acme/app", "provider": "github", "x": "HOLE"})
    body = json.dumps(review).encode().replace(b'"HOLE"', nested_json(depth))
    status, text = await post(http, "/mutate/gitrepository", body)
    assert status == 400, text
    assert "nests deeper than 100 levels" in text
    if depth < 1000:  # msgspec itself stops past ~1,000 levels; then the path is the body's
        assert "at `$.request.object.spec.x.a[0].a[0]" in text
        assert "more levels)`" in text


async def test_deeply_nested_pod_is_a_400(http: aiohttp.ClientSession) -> None:
    body = (
        b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"kind":"Pod"},'
        b'"operation":"CREATE","namespace":"flux-system","object":{"metadata":{"name":"p"},"spec":{"x":'
        + b"[" * 5000
        + b"]" * 5000
        + b"}}}}"
    )
    status, text = await post(http, "/mutate/pod", body)
    assert status == 400
    assert "nests deeper" in text


def test_the_depth_check_is_exact() -> None:
    assert admission.too_deep({"spec": nested(99)}) is None
    assert admission.too_deep({"spec": nested(101)}) is not None


@contextlib.asynccontextmanager
async def dropping_apiserver() -> AsyncIterator[client.ApiClient]:
    """An 'apiserver' that accepts each connection and closes it at once, mid-request."""

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(10)
        writer.transport.abort()

    server = await asyncio.start_server(drop, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cfg = client.Configuration(host=f"http://127.0.0.1:{port}")
    api = client.ApiClient(cfg)
    try:
        yield api
    finally:
        await api.close()
        server.close()
        await server.wait_closed()


async def test_lookups_against_a_dropping_apiserver_answer_what_they_can() -> None:
    """Regression: a dropped lookup used to escape as ServerDisconnectedError, and the review was a 500."""
    async with dropping_apiserver() as api:
        accounts = ServiceAccountCache(api)
        assert await accounts.annotations("flux-system", "source-controller") == {}
        secrets = SecretKeyLookup(api)
        assert await secrets.keys("apps", "app") is SecretLookup.UNKNOWN
        config = webhook_config.from_args(["--tls-cert-file=x", "--tls-key-file=y"])
        body = gitrepository_review(
            {"url": "https://github.com/acme/app", "provider": "github", "secretRef": {"name": "app"}}
        )
        review = admission.decode(json.dumps(body).encode(), GITREPOSITORY_REVIEWS)
        outcome = await review_gitrepository(review, config, secrets)
        assert outcome.result == "patched"  # translated as if the Secret were unknown: no warning, no 500
        response = json.loads(outcome.body)["response"]
        patch = json.loads(base64.b64decode(response["patch"]))
        assert patch[0]["value"][names.ANNOTATION_PROVIDER] == "github"
        assert "warnings" not in response


async def test_a_forged_annotation_for_an_unmanaged_provider_is_refused_but_existing_objects_update(
    tmp_path: Path,
) -> None:
    """Regression: with azure left out of --managed-providers, provider: generic plus a hand-written
    flux-passwordless.io/provider: azure was served. Now a CREATE is refused; an UPDATE of an object that already
    carried it (the admin narrowed the list later; Flux adds its finalizer) still passes untouched."""

    spec = {"url": "https://dev.azure.com/c/f/_git/f", "provider": "generic", "secretRef": {"name": "fleet-git-token"}}
    metadata = {"name": "fleet", "namespace": "flux-system", "annotations": {names.ANNOTATION_PROVIDER: "azure"}}
    async with running_webhook(tmp_path, "--managed-providers=github,gcp") as hook:
        connector = aiohttp.TCPConnector(ssl=hook.client_ssl())
        async with aiohttp.ClientSession(hook.url, connector=connector) as http:
            create = gitrepository_review(spec, metadata=metadata, namespace="flux-system", name="fleet")
            status, body = await post(http, "/mutate/gitrepository", create)
            assert status == 200
            assert body["response"]["allowed"] is False
            assert body["response"]["status"]["message"] == (
                'metadata.annotations[flux-passwordless.io/provider]: Unsupported value: "azure": '
                'supported values: "gcp", "github"'
            )
            update = copy.deepcopy(create)
            update["request"]["operation"] = "UPDATE"
            update["request"]["oldObject"] = copy.deepcopy(create["request"]["object"])
            update["request"]["object"]["metadata"]["finalizers"] = ["finalizers.fluxcd.io"]
            status, body = await post(http, "/mutate/gitrepository", update)
            assert body["response"]["allowed"] is True
            assert "patch" not in body["response"]


async def test_a_3_mb_gitrepository_is_translated_without_copying_it(http: aiohttp.ClientSession) -> None:
    """Regression: a 3 MB free-form map was deep-copied twice and diffed whole (4.2 s against the apiserver's
    5 s webhook timeout). Translation now copies only the maps it edits, and the patch touches only those."""
    free = {f"key-{i}": {"nested": [f"value-{i}-{j}" for j in range(5)], "n": i} for i in range(24_000)}
    spec = {"url": "https://github.com/acme/app", "provider": "github", "secretRef": {"name": "app"}, "free": free}
    obj = gitrepository_review(spec)["request"]["object"]
    translated = translate_gitrepository(obj, PolicyConfig())
    assert translated["spec"]["free"] is obj["spec"]["free"]  # shared, not copied
    assert obj["spec"]["provider"] == "github"  # the input is untouched
    body = json.dumps(gitrepository_review(spec)).encode()
    assert len(body) > 2_800_000
    started = time.perf_counter()
    status, answer = await post(http, "/mutate/gitrepository", body)
    elapsed = time.perf_counter() - started
    print(f"\n{len(body) / 1e6:.1f} MB GitRepository answered in {elapsed * 1000:.0f} ms (client included)")
    assert status == 200
    patch = json.loads(base64.b64decode(answer["response"]["patch"]))
    assert sorted(op["path"] for op in patch) == ["/metadata/annotations", "/spec/provider", "/spec/secretRef/name"]
