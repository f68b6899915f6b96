"""Kubernetes API access shared by the processes: one way to build a client, one way to read raw JSON, and what
every caller shares (the apply content type, the request timeout, what a transport error is)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, urlencode

import aiohttp
import msgspec
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

APPLY = "application/apply-patch+yaml"  # server-side apply
REQUEST_TIMEOUT_S = 10.0
# The apiserver unreachable: refused, reset, dropped mid-request (aiohttp's ServerDisconnectedError is a
# ClientError, not an OSError), or too slow. Always temporary: whoever catches it tries again later.
TRANSPORT_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError)


async def api_client(kubeconfig: str | None, max_connections: int = 100) -> client.ApiClient:
    """A client from ``kubeconfig``, or from the pod's ServiceAccount when None.

    ``max_connections`` caps the pool: each idle TLS connection keeps a 256 KiB buffer in asyncio.
    """
    cfg = client.Configuration()
    cfg.connection_pool_maxsize = max_connections
    if kubeconfig:
        await config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    else:
        config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    api = client.ApiClient(cfg)
    if not environment_configures_http():
        # kubernetes-asyncio's session trusts the environment: on every request aiohttp then scans for proxy
        # variables and reads ~/.netrc in a worker thread. Where neither is configured there is nothing to
        # find; turning it off took a third off the refresher's cost per Secret write (profiled).
        session = api.rest_client.pool_manager
        if hasattr(session, "_trust_env"):
            session._trust_env = False
    return api


PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NETRC")


def environment_configures_http() -> bool:
    """A proxy variable or a netrc file that aiohttp would honour (then the client keeps honouring them)."""
    if any(os.environ.get(name) for name in PROXY_VARIABLES):
        return True
    try:
        return (Path.home() / ".netrc").exists()
    except (RuntimeError, OSError):  # no home directory (a container's nobody)
        return False


async def read_json(call: Awaitable[Any]) -> dict[str, Any]:
    """Await a generated API call made with ``_preload_content=False`` and parse its body as a dict.

    Skips the generated models: cheaper, and the pure policy functions work on plain dicts anyway.
    """
    return (await read_json_sized(call))[0]


async def read_json_sized(call: Awaitable[Any]) -> tuple[dict[str, Any], int]:
    """``read_json``, and the size of the body read (bytes)."""
    response = await call
    try:
        body = await response.read()
        raise_for_status(response)
        return cast(dict[str, Any], msgspec.json.decode(body)), len(body)
    finally:
        response.release()


async def call_raw(call: Awaitable[Any]) -> None:
    """Await a generated API call made with ``_preload_content=False`` for its status only: no model is built
    from the answer (the costly part of the generated client when writing thousands of objects)."""
    response = await call
    try:
        raise_for_status(response)
    finally:
        response.release()


def raise_for_status(response: Any) -> None:
    """With ``_preload_content=False`` the generated client returns error responses instead of raising."""
    if not 200 <= response.status <= 299:
        raise ApiException(status=response.status, reason=response.reason)


class _WrittenMeta(msgspec.Struct):
    resourceVersion: str = ""


class _Written(msgspec.Struct):
    """What is read of a write's answer: its resourceVersion (msgspec skips the rest without building it)."""

    metadata: _WrittenMeta = msgspec.field(default_factory=_WrittenMeta)


class Writes:
    """POST and PATCH of plain JSON bodies through the generated client's own session, connection pool and
    authentication (its token-refresh hook included), without its per-request machinery: the body is
    encoded once by msgspec instead of walked by ``sanitize_for_serialization`` and encoded again, and no
    parameter validation or model look-up runs. Profiled on 10,000 Secret writes, that machinery was a third of
    the refresher's cost per write."""

    def __init__(self, api: client.ApiClient, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self._api = api
        self._host = str(api.configuration.host)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        rest = api.rest_client
        self._extra: dict[str, Any] = {
            k: v
            for k, v in {
                "proxy": rest.proxy,
                "proxy_headers": rest.proxy_headers,
                "server_hostname": rest.server_hostname,
            }.items()
            if v
        }

    async def send(
        self,
        method: str,
        path: tuple[str, ...],
        body: dict[str, Any],
        params: dict[str, str],
        content_type: str = "application/json",
    ) -> str:
        """``method`` the resource at ``path`` (its segments, e.g. ``("api", "v1", "namespaces", ns, "secrets")``,
        each quoted); the written object's resourceVersion ("" if the answer has none). ``ApiException`` with the
        status when the answer is not 2xx, one of ``TRANSPORT_ERRORS`` when there is none."""
        url = self._host + "".join("/" + quote(segment, safe="") for segment in path)
        if params:
            url += "?" + urlencode(params)
        headers = {**self._api.default_headers, "Accept": "application/json", "Content-Type": content_type}
        await self._api.update_params_for_auth(headers, [], ["BearerToken"])
        session = self._api.rest_client.pool_manager
        async with session.request(
            method, url, data=msgspec.json.encode(body), headers=headers, timeout=self._timeout, **self._extra
        ) as response:
            answer = await response.read()  # the connection goes back to the pool only once the answer is read
            raise_for_status(response)
        try:
            return msgspec.json.decode(answer, type=_Written).metadata.resourceVersion
        except msgspec.DecodeError:
            return ""
