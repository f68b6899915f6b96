"""Helpers for e2e tests that drive GitRepositories and read the Secrets the refresher fills."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from common import names
from common.gitrepository import PolicyConfig
from common.translation import translate_gitrepository
from tests.support.clouds import Clouds
from tests.support.gitserver import git_ls_remote
from tests.support.kube import Kube, eventually

GROUP, VERSION, PLURAL = names.FLUX_SOURCE_GROUP, "v1", names.GITREPOSITORY_PLURAL


async def create_secret(kube: Kube, namespace: str, name: str, data: dict[str, bytes], **meta: Any) -> None:
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name=name, **meta),
        data={k: base64.b64encode(v).decode() for k, v in data.items()},
    )
    await client.CoreV1Api(kube.api).create_namespaced_secret(namespace, body)


async def create_gitrepository(
    kube: Kube, namespace: str, name: str, provider: str, url: str, credentials: str | None = None, **spec: Any
) -> dict[str, Any]:
    """A GitRepository as the webhook stores it: the user's manifest through the webhook's own translation."""
    manifest: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "GitRepository",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"interval": "1m", "url": url, "provider": provider, **spec},
    }
    if credentials:
        manifest["spec"]["secretRef"] = {"name": credentials}
    body = translate_gitrepository(manifest, PolicyConfig())
    created: dict[str, Any] = await client.CustomObjectsApi(kube.api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )
    return created


async def read_secret(kube: Kube, namespace: str, name: str) -> client.V1Secret | None:
    try:
        return await client.CoreV1Api(kube.api).read_namespaced_secret(name, namespace)
    except ApiException as err:
        if err.status == 404:
            return None
        raise


def decoded(secret: client.V1Secret, key: str) -> str:
    return base64.b64decode(secret.data[key]).decode()


async def filled(
    kube: Kube, namespace: str, name: str, timeout: float = 10.0, not_password: str | None = None
) -> client.V1Secret:
    async def probe() -> client.V1Secret | None:
        secret = await read_secret(kube, namespace, name)
        if secret is None or not secret.data or "password" not in secret.data:
            return None
        if not_password is not None and decoded(secret, "password") == not_password:
            return None
        return secret

    result: client.V1Secret = await eventually(probe, timeout=timeout, what=f"Secret {name} filled")
    return result


async def events_for(kube: Kube, namespace: str, name: str) -> list[client.CoreV1Event]:
    listed = await client.CoreV1Api(kube.api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}"
    )
    return list(listed.items)


async def ls_remote(clouds: Clouds, repo: str, secret: client.V1Secret) -> Any:
    return await asyncio.to_thread(
        git_ls_remote,
        clouds.repo_url(repo),
        decoded(secret, "username"),
        decoded(secret, "password"),
        clouds.tls.ca_file,
    )
