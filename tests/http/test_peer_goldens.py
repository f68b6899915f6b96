"""Pod injection case for case with the webhooks it stands in for: every fixture under tests/fixtures/pods/peers
(the Azure Workload Identity webhook v1.6.0's test cases and the EKS pod identity webhook v0.6.17's golden pods,
each answered by the peer's own code: tests/peers) sent to our webhook over TLS as an AdmissionReview, our patch
applied, and the pod compared field by field with the peer's. Where we differ on purpose the fixture says why and
holds our answer instead (docs/azure.md, docs/aws.md list them).

Then the chain: a pod both webhooks see, ours first then the peer's, and the peer's first then ours, ends with
env that names a file its mount provides.
"""

from __future__ import annotations

import base64
import copy
import json
import posixpath
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonpatch
import pytest

from tests.peers.peerwebhooks import fixtures, load, normalized, running_peers
from tests.support.webhook import post, running_webhook

FIXTURES = fixtures()
FLAGS = {
    "azure_injection": "--azure-injection",
    "aws_injection": "--aws-injection",
    "azure_tenant_id": "--azure-tenant-id",
    "aws_default_region": "--aws-default-region",
}


def flags(config: dict[str, Any]) -> tuple[str, ...]:
    out = [f"{FLAGS[k]}={v}" for k, v in sorted(config.items()) if k in FLAGS]
    if config.get("aws_sts_regional_endpoints"):
        out.append("--aws-sts-regional-endpoints")
    return tuple(out)


def namespace_of(index: int) -> str:
    return f"case-{index}"  # each fixture its own namespace: its ServiceAccount may share a name with another's


@pytest.fixture(scope="module")
async def webhooks(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[tuple[str, ...], str]]:
    """One webhook per configuration the fixtures use, each knowing every fixture's ServiceAccount."""
    accounts: dict[str, dict[str, str]] = {}
    for index, path in enumerate(FIXTURES):
        case = load(path)
        if not case.get("serviceAccountMissing"):
            name = case["pod"]["spec"].get("serviceAccountName") or "default"
            accounts[f"{namespace_of(index)}/{name}"] = case["serviceAccount"]["annotations"]
    configs = sorted({flags(load(p).get("config") or {}) for p in FIXTURES})
    urls: dict[tuple[str, ...], str] = {}
    stack: list[Any] = []
    try:
        for config in configs:
            hook = running_webhook(tmp_path_factory.mktemp("peer-webhook"), *config, serviceaccounts=accounts)
            running = await hook.__aenter__()
            stack.append(hook)
            urls[config] = running.url
            urls[(*config, "ca")] = str(running.ca_file)
        yield urls
    finally:
        for hook in reversed(stack):
            await hook.__aexit__(None, None, None)


async def review(webhooks: dict[tuple[str, ...], str], case: dict[str, Any], namespace: str) -> dict[str, Any]:
    """Our webhook's answer for the fixture's pod, in ``namespace``: {"mutated": pod} or {"denied": message}."""
    config = flags(case.get("config") or {})
    pod = copy.deepcopy(case["pod"])
    original_namespace = pod["metadata"].get("namespace")
    pod["metadata"]["namespace"] = namespace
    body = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "peer-golden",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "object": pod,
        },
    }
    context = ssl.create_default_context(cafile=webhooks[(*config, "ca")])
    async with aiohttp.ClientSession(webhooks[config], connector=aiohttp.TCPConnector(ssl=context)) as http:
        status, answer = await post(http, "/mutate/pod", body)
    assert status == 200, answer
    response = answer["response"]
    if not response["allowed"]:
        return {"denied": response["status"]["message"]}
    patch = json.loads(base64.b64decode(response["patch"])) if response.get("patch") else []
    mutated = jsonpatch.apply_patch(pod, patch)
    mutated["metadata"]["namespace"] = original_namespace
    return {"mutated": normalized(mutated)}


@pytest.mark.parametrize("path", FIXTURES, ids=[f"{p.parent.name.split('-v')[0]}/{p.stem}" for p in FIXTURES])
async def test_as_the_peer_does(webhooks: dict[tuple[str, ...], str], path: Path) -> None:
    case = load(path)
    ours = await review(webhooks, case, namespace_of(FIXTURES.index(path)))
    if "why" in case:
        assert ours == case["ours"], f"a documented difference changed: {case['why']}"
        assert ours != case["expect"], "the fixture says we differ, and we no longer do: drop its why"
        return
    peer = case["expect"]
    if "denied" in peer:
        assert "denied" in ours, f"the peer refuses ({peer['denied']}); we let it pass"
        return  # both refuse; our message names the field and the fix (docs), the peer's is Go's error text
    assert ours == peer


# --- the chain: both webhooks on one pod ---------------------------------------------------------------------


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*(pod["spec"].get("initContainers") or []), *(pod["spec"].get("containers") or [])]


def token_files(pod: dict[str, Any], original: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(container, the token file its env names, whether a mount of the pod's volumes provides it), for the token
    variables the webhooks set (one a container sets itself is its own business)."""
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    own = {(c["name"], e["name"]) for c in containers(original) for e in c.get("env") or []}
    found = []
    for container in containers(pod):
        env = {e["name"]: e.get("value", "") for e in container.get("env") or []}
        for variable in ("AZURE_FEDERATED_TOKEN_FILE", "AWS_WEB_IDENTITY_TOKEN_FILE"):
            if variable not in env or (container["name"], variable) in own:
                continue
            path = env[variable]
            if path.startswith("C:\\"):  # a Windows pod: the same file, as Windows names it
                path = path[2:].replace("\\", "/")
            provided = False
            for mount in container.get("volumeMounts") or []:
                volume = volumes.get(mount["name"]) or {}
                for source in (volume.get("projected") or {}).get("sources") or []:
                    token = source.get("serviceAccountToken")
                    if token and posixpath.join(mount["mountPath"], token["path"]) == path:
                        provided = True
            found.append((container["name"], env[variable], provided))
    return found


CHAIN = [p for p in FIXTURES if "why" not in load(p) and "mutated" in load(p)["expect"]]


@pytest.mark.parametrize("path", CHAIN, ids=[f"{p.parent.name.split('-v')[0]}/{p.stem}" for p in CHAIN])
async def test_both_webhooks_in_either_order_leave_env_naming_a_mounted_token(
    webhooks: dict[tuple[str, ...], str], path: Path
) -> None:
    """Installed side by side (or on reinvocation), ours then the peer's and the peer's then ours: each token
    file a container's env names is one a mount of it provides, and a second pass of either changes nothing."""
    case = load(path)
    namespace = namespace_of(FIXTURES.index(path))
    with running_peers() as ask:
        ours_first = (await review(webhooks, case, namespace))["mutated"]
        then_peer = ask({**case, "pod": ours_first})["mutated"]
        peer_first = case["expect"]["mutated"]
        then_ours = (await review(webhooks, {**case, "pod": peer_first}, namespace))["mutated"]
    for pod in (then_peer, then_ours):
        files = token_files(pod, case["pod"])
        assert all(provided for _, _, provided in files), files
    assert then_peer == ours_first, "the peer changed what we injected"
    assert then_ours == peer_first, "we changed what the peer injected"
