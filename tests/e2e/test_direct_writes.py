"""common.kube.Writes, the refresher's Secret write path, against a real apiserver: create, server-side apply
under our field manager, the resourceVersion written, the apiserver's errors as ApiException with their status,
and the client's authentication (its token-refresh hook included) on every request."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from common import names
from common.kube import APPLY, Writes, api_client
from tests.support.kube import Kube


def secret(name: str, password: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": {"app": "x"}},
        "type": "kubernetes.io/basic-auth",
        "data": {"password": base64.b64encode(password.encode()).decode()},
    }


async def read(kube: Kube, namespace: str, name: str) -> Any:
    return await client.CoreV1Api(kube.api).read_namespaced_secret(name, namespace)


async def test_create_then_apply_as_our_field_manager(kube: Kube, namespace: str) -> None:
    writes = Writes(kube.api)
    path = ("api", "v1", "namespaces", namespace, "secrets")
    created = await writes.send("POST", path, secret("s", "one"), {"fieldManager": names.FIELD_MANAGER})
    applied = await writes.send(
        "PATCH", (*path, "s"), secret("s", "two"), {"fieldManager": names.FIELD_MANAGER, "force": "true"}, APPLY
    )
    stored = await read(kube, namespace, "s")
    assert created
    assert applied != created
    assert applied == stored.metadata.resource_version  # what the watch's event of this write will carry
    assert base64.b64decode(stored.data["password"]) == b"two"
    assert {m.manager for m in stored.metadata.managed_fields} == {names.FIELD_MANAGER}
    with pytest.raises(ApiException) as taken:
        await writes.send("POST", path, secret("s", "three"), {"fieldManager": names.FIELD_MANAGER})
    assert taken.value.status == 409
    with pytest.raises(ApiException) as missing:
        await writes.send("POST", ("api", "v1", "namespaces", "no-such-ns", "secrets"), secret("s", "x"), {})
    assert missing.value.status == 404
    with pytest.raises(ApiException) as invalid:  # a name the apiserver refuses: its 422, not ours
        await writes.send("POST", path, secret("Not_Valid", "x"), {})
    assert invalid.value.status == 422


async def test_each_request_authenticates_through_the_refresh_hook(kube: Kube, namespace: str) -> None:
    api = await api_client(str(kube.kubeconfig))
    good = api.configuration.api_key["BearerToken"]
    api.configuration.api_key["BearerToken"] = "expired"
    calls = 0

    def refresh(configuration: client.Configuration) -> None:  # what the in-cluster loader installs
        nonlocal calls
        calls += 1
        configuration.api_key["BearerToken"] = good

    api.configuration.refresh_api_key_hook = refresh
    try:
        writes = Writes(api)
        for i in range(2):
            await writes.send("POST", ("api", "v1", "namespaces", namespace, "secrets"), secret(f"r{i}", "p"), {})
        assert calls == 2
        api.configuration.refresh_api_key_hook = None
        api.configuration.api_key["BearerToken"] = "Bearer wrong"
        with pytest.raises(ApiException) as refused:
            await writes.send("POST", ("api", "v1", "namespaces", namespace, "secrets"), secret("r9", "p"), {})
        assert refused.value.status == 401
    finally:
        await api.close()
