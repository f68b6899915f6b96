"""Both processes report themselves dead (/livez 503) once work meant to run until shutdown has ended: a replica
that renews nothing, or serves a certificate it no longer reloads, must be restarted, not left looking healthy."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import aiohttp
from aiohttp import web
from kubernetes_asyncio import client

from common import httpserver
from common.connections import STATUS_LIMITS
from refresher import app as refresher_app
from refresher.config import from_args as refresher_args
from tests.support.controlplane import free_port
from webhook.config import from_args as webhook_args
from webhook.lookups import SecretKeyLookup, StaticServiceAccounts
from webhook.server import Deps, routes


async def forever() -> None:
    await asyncio.Event().wait()


async def crash() -> None:
    raise ConnectionResetError("the work crashed")


async def test_the_webhook_fails_livez_when_a_background_task_ends(tmp_path: Path) -> None:
    (tmp_path / "sa.json").write_text("{}")
    config = webhook_args(["--tls-cert-file=x", "--tls-key-file=y"])
    healthy = asyncio.create_task(forever(), name="certificate-reload")
    deps = Deps(config, StaticServiceAccounts(tmp_path / "sa.json"), SecretKeyLookup(None), None, [healthy])
    livez = routes(deps)[("GET", "/livez")]
    assert (await livez(cast(Any, None))).status == 200
    ended = asyncio.create_task(crash(), name="serviceaccount-watch")
    await asyncio.gather(ended, return_exceptions=True)
    deps.core_tasks.append(ended)
    response = cast(web.Response, await livez(cast(Any, None)))
    assert response.status == 503
    assert response.text == "background work ended: serviceaccount-watch\n"
    healthy.cancel()


async def test_the_refresher_fails_livez_when_its_loop_ends() -> None:
    config = refresher_args(["--listen=127.0.0.1:8080"])
    async with client.ApiClient(client.Configuration(host="http://127.0.0.1:9")) as api, aiohttp.ClientSession() as s:
        refresher = refresher_app.Refresher(config, api, s)
        refresher.run = crash  # type: ignore[method-assign]
        port = free_port()
        status = await httpserver.start(refresher.status_routes(), "127.0.0.1", port, STATUS_LIMITS)
        try:
            async with s.get(f"http://127.0.0.1:{port}/livez") as resp:
                assert resp.status == 200
            task = refresher.start()
            await asyncio.gather(task, return_exceptions=True)
            async with s.get(f"http://127.0.0.1:{port}/livez") as resp:
                assert resp.status == 503
                assert await resp.text() == "refresher loop ended (ConnectionResetError)\n"
        finally:
            await status.close()
