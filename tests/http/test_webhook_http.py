"""The webhook over real TLS with an aiohttp client: reviews, bad input, limits, health, metrics, reload."""

from __future__ import annotations

import base64
import json
import logging
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from certs.authority import KeyPair, issue_serving, new_ca
from certs.files import TLS_CERT, TLS_KEY, write_atomic
from tests.support.reviews import gitrepository_review
from tests.support.webhook import RunningWebhook, post

# The benchmark's pod review (a copy: tests read nothing outside the repository).
REVIEWS = Path(__file__).parents[1] / "fixtures" / "reviews"
TOKEN_LIKE = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"


def pod_review(**overrides: Any) -> dict[str, Any]:
    review: dict[str, Any] = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "flux-system",
            "operation": "CREATE",
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"generateName": "source-controller-", "labels": {"app": "source-controller"}},
                "spec": {
                    "serviceAccountName": "source-controller",
                    "containers": [
                        {
                            "name": "manager",
                            "image": "m:1",
                            "env": [{"name": "GIT_TOKEN", "value": TOKEN_LIKE}],
                        }
                    ],
                },
            },
        },
    }
    review["request"].update(overrides)
    return review


def decode_patch(response: dict[str, Any]) -> list[dict[str, Any]]:
    assert response["patchType"] == "JSONPatch"
    patch: list[dict[str, Any]] = json.loads(base64.b64decode(response["patch"]))
    return patch


async def test_pod_review_v1_gets_label_and_annotation(http: aiohttp.ClientSession) -> None:
    status, body = await post(http, "/mutate/pod", pod_review())
    assert status == 200
    assert body["apiVersion"] == "admission.k8s.io/v1"
    assert body["kind"] == "AdmissionReview"
    response = body["response"]
    assert response["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002"
    assert response["allowed"] is True
    assert decode_patch(response) == [
        {"op": "add", "path": "/metadata/labels/azure.workload.identity~1use", "value": "true"},
        {"op": "add", "path": "/metadata/annotations", "value": {"flux-passwordless.io/injected": "azure"}},
    ]


async def test_benchmark_review_gets_the_two_op_patch(http: aiohttp.ClientSession) -> None:
    review = json.loads((REVIEWS / "pod_review.json").read_text())
    status, body = await post(http, "/mutate/pod", review)
    assert status == 200
    ops = decode_patch(body["response"])
    assert [op["path"] for op in ops] == [
        "/metadata/labels/azure.workload.identity~1use",
        "/metadata/annotations/flux-passwordless.io~1injected",
    ]


async def test_v1beta1_is_answered_in_kind(http: aiohttp.ClientSession) -> None:
    review = pod_review()
    review["apiVersion"] = "admission.k8s.io/v1beta1"
    status, body = await post(http, "/mutate/pod", review)
    assert status == 200
    assert body["apiVersion"] == "admission.k8s.io/v1beta1"
    assert body["response"]["uid"] == review["request"]["uid"]


async def test_pod_without_identity_is_allowed_unpatched(http: aiohttp.ClientSession) -> None:
    review = pod_review()
    review["request"]["object"]["spec"]["serviceAccountName"] = "plain"
    status, body = await post(http, "/mutate/pod", review)
    assert status == 200
    assert body["response"] == {"uid": review["request"]["uid"], "allowed": True}


async def test_excluded_namespace_is_never_touched(http: aiohttp.ClientSession) -> None:
    review = pod_review(namespace="kube-system")
    review["request"]["object"]["spec"]["serviceAccountName"] = "source-controller"
    status, body = await post(http, "/mutate/pod", review)
    assert status == 200
    assert "patch" not in body["response"]


async def test_gitrepository_denial_reads_like_a_field_error(http: aiohttp.ClientSession) -> None:
    review = gitrepository_review({"interval": "1m", "url": "https://github.com/o/r", "provider": "gitub"})
    status, body = await post(http, "/mutate/gitrepository", review)
    assert status == 200
    response = body["response"]
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    assert response["status"]["message"].startswith('spec.provider: Unsupported value: "gitub"')
    assert 'did you mean "github"?' in response["status"]["message"]


async def test_gitrepository_translation_patch(http: aiohttp.ClientSession) -> None:
    spec = {"interval": "1m", "url": "https://github.com/o/r", "provider": "gcp", "secretRef": {"name": "sa"}}
    status, body = await post(http, "/mutate/gitrepository", gitrepository_review(spec))
    assert status == 200
    ops = decode_patch(body["response"])
    assert {"op": "replace", "path": "/spec/provider", "value": "generic"} in ops
    assert {"op": "replace", "path": "/spec/secretRef/name", "value": "podinfo-git-token"} in ops


@pytest.mark.parametrize("operation", ["DELETE", "CONNECT"])
async def test_gitrepository_delete_is_never_touched(http: aiohttp.ClientSession, operation: str) -> None:
    review = gitrepository_review({"provider": "nonsense"}, operation=operation)
    status, body = await post(http, "/mutate/gitrepository", review)
    assert status == 200
    assert body["response"] == {"uid": "b1c2", "allowed": True}


async def test_gitrepository_status_update_is_never_touched(http: aiohttp.ClientSession) -> None:
    review = gitrepository_review({"provider": "nonsense"}, operation="UPDATE", subResource="status")
    status, body = await post(http, "/mutate/gitrepository", review)
    assert (status, body["response"]["allowed"]) == (200, True)
    assert "patch" not in body["response"]


async def test_dry_run_gets_the_same_answer(http: aiohttp.ClientSession) -> None:
    spec = {"interval": "1m", "url": "https://github.com/o/r", "provider": "gcp", "secretRef": {"name": "sa"}}
    _, real = await post(http, "/mutate/gitrepository", gitrepository_review(spec))
    _, dry = await post(http, "/mutate/gitrepository", gitrepository_review(spec, dryRun=True))
    assert dry == real


MALFORMED: list[tuple[str, bytes | dict[str, Any], str]] = [
    ("not-json", b"{this is not json", "body is not JSON"),
    ("not-an-object", b"[1, 2, 3]", "Expected `object`, got `array` - at `$`"),
    ("wrong-review-kind", {"apiVersion": "v1", "kind": "Pod"}, "expected kind AdmissionReview"),
    ("no-request", {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}, "has no request"),
    ("no-uid", {**pod_review(), "request": {**pod_review()["request"], "uid": ""}}, "request.uid is missing"),
    (
        "no-object",
        {**pod_review(), "request": {**pod_review()["request"], "object": None}},
        "object is missing",
    ),
    (
        "object-not-a-map",
        {**pod_review(), "request": {**pod_review()["request"], "object": "pod"}},
        "Expected `object | null`, got `str` - at `$.request.object`",
    ),
    (
        "annotations-not-a-map",
        {**pod_review(), "request": {**pod_review()["request"], "object": {"metadata": {"annotations": 5}}}},
        "Expected `object`, got `int` - at `$.request.object.metadata.annotations`",
    ),
    (
        "containers-not-a-list",
        {**pod_review(), "request": {**pod_review()["request"], "object": {"spec": {"containers": {"a": 1}}}}},
        "Expected `array`, got `object` - at `$.request.object.spec.containers`",
    ),
    (
        "uid-not-a-string",
        {**pod_review(), "request": {**pod_review()["request"], "uid": 7}},
        "Expected `str`, got `int` - at `$.request.uid`",
    ),
    (
        "wrong-resource-kind",
        gitrepository_review({"url": "https://x"}),
        "request.kind.kind is 'GitRepository'; this endpoint reviews Pod",
    ),
    (
        "metadata-wrong-type",
        {**pod_review(), "request": {**pod_review()["request"], "object": {"metadata": 5}}},
        "Expected `object`, got `int` - at `$.request.object.metadata`",
    ),
]


@pytest.mark.parametrize(("body", "reason"), [(b, r) for _, b, r in MALFORMED], ids=[i for i, _, _ in MALFORMED])
async def test_malformed_review_is_a_400_with_a_reason(
    http: aiohttp.ClientSession, body: bytes | dict[str, Any], reason: str
) -> None:
    status, text = await post(http, "/mutate/pod", body)
    assert status == 400
    assert "malformed" in text
    assert reason in text


async def test_malformed_gitrepository_object_is_a_400(http: aiohttp.ClientSession) -> None:
    review = gitrepository_review({"provider": "github"})
    review["request"]["object"]["spec"]["secretRef"] = ["not", "a", "map"]
    review["request"]["object"]["metadata"]["annotations"] = "nope"
    status, text = await post(http, "/mutate/gitrepository", review)
    assert status == 400
    assert "malformed" in text


async def test_huge_body_is_refused_not_buffered(http: aiohttp.ClientSession) -> None:
    review = pod_review()
    review["request"]["object"]["metadata"]["annotations"] = {"big": "x" * (4 * 1024 * 1024)}
    status, _ = await post(http, "/mutate/pod", review)
    assert status == 413


async def test_the_apiserver_query_string_is_ignored(http: aiohttp.ClientSession) -> None:
    # The apiserver calls "<path>?timeout=5s".
    status, body = await post(http, "/mutate/pod?timeout=5s", pod_review())
    assert status == 200
    assert decode_patch(body["response"])


async def test_unknown_path_is_404_and_wrong_method_is_405(http: aiohttp.ClientSession) -> None:
    status, text = await post(http, "/mutate/pods", pod_review())
    assert (status, text) == (404, "no such path: /mutate/pods\n")
    async with http.get("/mutate/pod") as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "POST"
        assert "use POST" in await resp.text()
    async with http.post("/healthz") as resp:
        assert (resp.status, resp.headers["Allow"]) == (405, "GET")


async def test_health_and_metrics(http: aiohttp.ClientSession, webhook: RunningWebhook) -> None:
    await post(http, "/mutate/pod", pod_review())
    await post(http, "/mutate/pod", b"junk")
    async with http.get("/healthz") as resp:
        assert resp.status == 200
    async with http.get("/livez") as resp:
        assert resp.status == 200
    async with http.get("/metrics") as resp:
        assert resp.status == 404  # not on the admission port: see the metrics port
    async with aiohttp.ClientSession() as plain, plain.get(webhook.metrics_url) as resp:
        text = await resp.text()
    assert 'flux_passwordless_webhook_requests_total{kind="Pod",operation="CREATE",result="patched"}' in text
    assert 'flux_passwordless_webhook_requests_total{kind="Pod",operation="unknown",result="malformed"}' in text
    assert 'flux_passwordless_webhook_request_duration_seconds_bucket{kind="Pod"' in text


async def test_no_token_like_value_reaches_logs(http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await post(http, "/mutate/pod", pod_review())
    url = f"https://x-access-token:{TOKEN_LIKE}@github.com/o/r"
    http_url = url.replace("https://", "http://")
    for spec in (
        {"interval": "1m", "url": http_url, "provider": "github", "secretRef": {"name": "s"}},
        {"interval": "1m", "url": url, "provider": "gitub"},
    ):
        _, body = await post(http, "/mutate/gitrepository", gitrepository_review(spec))
        assert TOKEN_LIKE not in json.dumps(body)
    assert caplog.records, "the denial is logged"
    assert TOKEN_LIKE not in caplog.text


async def test_malformed_reviews_never_echo_values(
    http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """A 400 names the JSON path and the types, never the value that was there (it may be a secret)."""
    caplog.set_level(logging.DEBUG)
    request = pod_review()["request"]
    bodies: list[bytes | dict[str, Any]] = [
        {**pod_review(), "request": {**request, "uid": [TOKEN_LIKE]}},
        {**pod_review(), "request": {**request, "object": {"metadata": {"annotations": [TOKEN_LIKE]}}}},
        {**pod_review(), "request": {**request, "object": {"spec": {"containers": [{"env": [{"name": 1}]}]}}}},
        {**pod_review(), "request": {**request, "object": TOKEN_LIKE}},
        f'{{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {{"uid": "{TOKEN_LIKE}'.encode(),
        f"{TOKEN_LIKE}".encode(),
    ]
    for body in bodies:
        for path in ("/mutate/pod", "/mutate/gitrepository"):
            status, text = await post(http, path, body)
            assert status == 400, (path, text)
            assert "malformed" in text
            assert TOKEN_LIKE not in text
            assert TOKEN_LIKE[4:20] not in text
    assert TOKEN_LIKE not in caplog.text


def _peer_serial(webhook: RunningWebhook, ca_pem: bytes) -> int:
    import socket

    from cryptography import x509

    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    with (
        socket.create_connection(("127.0.0.1", webhook.port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


async def test_rotated_certificate_is_served_without_restart(webhook: RunningWebhook) -> None:
    import asyncio

    before = await asyncio.to_thread(_peer_serial, webhook, webhook.ca_pem)
    new_authority = new_ca("rotated-ca")
    rotated: KeyPair = issue_serving(new_authority, ["localhost"], ["127.0.0.1"])
    write_atomic(webhook.cert_dir / TLS_KEY, rotated.key_pem)
    write_atomic(webhook.cert_dir / TLS_CERT, rotated.cert_pem)
    expected = rotated.certificate().serial_number
    for _ in range(100):
        await asyncio.sleep(0.05)
        try:
            serial = await asyncio.to_thread(_peer_serial, webhook, new_authority.cert_pem)
        except ssl.SSLError:
            continue  # still the old certificate
        if serial == expected:
            break
    else:
        pytest.fail("the rotated certificate was never served")
    assert serial != before


async def test_half_rotated_pair_keeps_the_old_certificate(webhook: RunningWebhook) -> None:
    import asyncio

    before = await asyncio.to_thread(_peer_serial, webhook, webhook.ca_pem)
    other = issue_serving(new_ca("other"), ["localhost"], ["127.0.0.1"])
    write_atomic(webhook.cert_dir / TLS_KEY, other.key_pem)  # key rotated, certificate not yet
    await asyncio.sleep(0.4)
    assert await asyncio.to_thread(_peer_serial, webhook, webhook.ca_pem) == before
