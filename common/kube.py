"""Kubernetes API access shared by the processes: one way to build a client, one way to read raw JSON, and what
every caller shares (the apply content type, the request timeout, what a transport error is)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, cast

import aiohttp
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
    response = await call
    try:
        body = await response.read()
        raise_for_status(response)
        return cast(dict[str, Any], json.loads(body))
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
