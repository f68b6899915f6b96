"""The refresher's calls to the apiserver, each one thin: read a Secret or ServiceAccount, create or apply a
Secret. Behind the ``Cluster`` protocol so the loop can be unit-tested against an in-memory cluster.

Every call goes through one gate (``--write-concurrency`` in flight), has a bounded timeout, and reads no
generated models. Errors come out as they are: ``ApiException`` with its status, or one of
``common.kube.TRANSPORT_ERRORS``; callers decide what each means.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from common import names
from common.kube import APPLY, REQUEST_TIMEOUT_S, Writes, read_json


class Cluster(Protocol):
    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Secret, or None when it does not exist."""

    async def read_service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The ServiceAccount, or None when it does not exist."""

    async def create_secret(self, namespace: str, body: dict[str, Any]) -> str:
        """Create; the new resourceVersion ("" if unknown). ``ApiException(409)`` when a Secret of that name
        exists."""

    async def apply_secret(self, namespace: str, name: str, body: dict[str, Any]) -> str:
        """Server-side apply as field manager ``flux-passwordless``, forcing the fields in ``body``; the
        resourceVersion written ("" if unknown)."""


class KubeCluster:
    def __init__(self, api: client.ApiClient, concurrency: int) -> None:
        self._core = client.CoreV1Api(api)
        self._writes = Writes(api)
        self._gate = asyncio.Semaphore(concurrency)

    async def _read(self, call: Any) -> dict[str, Any] | None:
        async with self._gate:
            try:
                return await read_json(call)
            except ApiException as err:
                if err.status == 404:
                    return None
                raise

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._read(
            self._core.read_namespaced_secret(
                name, namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT_S
            )
        )

    async def read_service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._read(
            self._core.read_namespaced_service_account(
                name, namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT_S
            )
        )

    async def create_secret(self, namespace: str, body: dict[str, Any]) -> str:
        async with self._gate:
            return await self._writes.send(
                "POST",
                ("api", "v1", "namespaces", namespace, "secrets"),
                body,
                {"fieldManager": names.FIELD_MANAGER},
            )

    async def apply_secret(self, namespace: str, name: str, body: dict[str, Any]) -> str:
        async with self._gate:
            return await self._writes.send(
                "PATCH",
                ("api", "v1", "namespaces", namespace, "secrets", name),
                body,
                {"fieldManager": names.FIELD_MANAGER, "force": "true"},
                content_type=APPLY,
            )
