"""The HTTPS server: routes, metrics, health, and the process lifecycle. It only decodes, calls the review
functions and encodes; decisions live in ``webhook.reviews`` and the pure modules it calls."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from kubernetes_asyncio import client
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from common.kube import api_client
from common.process import run_until_signalled
from webhook import admission
from webhook.config import WebhookConfig
from webhook.lookups import SecretKeyLookup, ServiceAccountCache, ServiceAccounts, StaticServiceAccounts
from webhook.metrics import METRICS
from webhook.reviews import GITREPOSITORY_KINDS, POD_KINDS, Outcome, review_gitrepository, review_pod
from webhook.tls import ReloadingTLS

log = logging.getLogger(__name__)


@dataclass
class Deps:
    config: WebhookConfig
    accounts: ServiceAccounts
    secrets: SecretKeyLookup
    tls: ReloadingTLS | None


Decide = Callable[[admission.Request, Deps], Awaitable[Outcome]]


def _endpoint(
    kind: str, kinds: tuple[str, ...], decide: Decide, deps: Deps
) -> Callable[[web.Request], Awaitable[web.Response]]:
    record = METRICS.record
    clock = time.perf_counter

    async def handle(request: web.Request) -> web.Response:
        started = clock()
        body = await request.read()
        try:
            review = admission.decode(body, kinds)
            outcome = await decide(review, deps)
        except admission.BadReview as err:
            record(kind, "unknown", "malformed", None)
            return web.Response(status=400, text=f"malformed AdmissionReview: {err}\n")
        except (TypeError, AttributeError, KeyError, ValueError) as err:
            # A structurally valid review whose object has the wrong shape (e.g. "annotations": 5).
            log.warning("malformed object in review", extra={"endpoint": kind, "error": type(err).__name__})
            record(kind, "unknown", "malformed", None)
            return web.Response(status=400, text=f"malformed object in AdmissionReview: {type(err).__name__}\n")
        record(kind, review.operation, outcome.result, clock() - started)
        return web.Response(body=outcome.body, content_type="application/json")

    return handle


async def _gitrepository(review: admission.Request, deps: Deps) -> Outcome:
    return await review_gitrepository(review, deps.config, deps.secrets)


async def _pod(review: admission.Request, deps: Deps) -> Outcome:
    return await review_pod(review, deps.config, deps.accounts)


def make_app(deps: Deps) -> web.Application:
    app = web.Application(client_max_size=deps.config.max_body_bytes)

    async def healthz(_: web.Request) -> web.Response:
        problems = []
        if deps.tls is not None and not deps.tls.loaded:
            problems.append("tls certificate not loaded")
        if not deps.accounts.synced:
            problems.append("serviceaccount cache not synced")
        if problems:
            return web.Response(status=503, text="; ".join(problems) + "\n")
        return web.Response(text="ok\n")

    async def livez(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_post("/mutate/gitrepository", _endpoint("GitRepository", GITREPOSITORY_KINDS, _gitrepository, deps))
    app.router.add_post("/mutate/pod", _endpoint("Pod", POD_KINDS, _pod, deps))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", healthz)
    app.router.add_get("/livez", livez)
    app.router.add_get("/metrics", metrics)
    return app


async def serve(config: WebhookConfig, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set: the HTTPS server, certificate reloads and the ServiceAccount watch."""
    tls = ReloadingTLS(config.tls_cert_file, config.tls_key_file)
    tasks: list[asyncio.Task[None]] = [asyncio.create_task(tls.watch(config.cert_reload_seconds))]
    api: client.ApiClient | None = None
    accounts: ServiceAccounts
    if config.serviceaccounts_file:
        accounts = StaticServiceAccounts(config.serviceaccounts_file)
    else:
        api = await api_client(config.kubeconfig)
        cache = ServiceAccountCache(api, config.serviceaccount_lookup_timeout)
        tasks.append(asyncio.create_task(cache.informer.run()))
        accounts = cache
    deps = Deps(config, accounts, SecretKeyLookup(api, config.secret_lookup_timeout), tls)
    runner = web.AppRunner(make_app(deps), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, ssl_context=tls.context, backlog=1024)
    await site.start()
    log.info("webhook serving", extra={"host": config.host, "port": config.port})
    try:
        await stop.wait()
    finally:
        log.info("webhook stopping")
        await runner.cleanup()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if api is not None:
            await api.close()


async def run(config: WebhookConfig) -> None:
    await run_until_signalled(lambda stop: serve(config, stop))
