"""The HTTPS server: routes, metrics, health, and the process lifecycle. It only decodes, calls the review
functions and encodes; decisions live in ``webhook.reviews`` and the pure modules it calls.

It runs on aiohttp's low-level ``web.Server`` with a route table of its own rather than on ``web.Application``:
the apiserver calls six fixed paths, and the Application's router, request subclass and signals cost about a
quarter of the bare per-request budget (measured in ``bench/webhook.py``; see the README's figures).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from kubernetes_asyncio import client
from multidict import CIMultiDict, CIMultiDictProxy
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from common.kube import api_client
from common.process import run_until_signalled
from webhook import admission
from webhook.config import WebhookConfig
from webhook.connections import BoundedServer, listen
from webhook.lookups import SecretKeyLookup, ServiceAccountCache, ServiceAccounts, StaticServiceAccounts
from webhook.metrics import METRICS
from webhook.reviews import GITREPOSITORY_REVIEWS, POD_REVIEWS, Outcome, review_gitrepository, review_pod
from webhook.tls import ReloadingTLS

log = logging.getLogger(__name__)


@dataclass
class Deps:
    config: WebhookConfig
    accounts: ServiceAccounts
    secrets: SecretKeyLookup
    tls: ReloadingTLS | None
    # Background work meant to run until shutdown (certificate reloads, the ServiceAccount watch): if one ends
    # any other way, /livez fails so Kubernetes restarts the pod instead of serving stale certificates.
    core_tasks: list[asyncio.Task[None]] = field(default_factory=list)
    stopping: bool = False  # SIGTERM came: still serving, no longer ready


Decide = Callable[[admission.Review[Any]], Awaitable[Outcome]]
Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

# Ready-made header maps: Response copies them as they are, where content_type=... would be parsed each time.
JSON_HEADERS = CIMultiDictProxy(CIMultiDict({"Content-Type": "application/json"}))
TEXT_HEADERS = CIMultiDictProxy(CIMultiDict({"Content-Type": "text/plain; charset=utf-8"}))


def _text(text: str, status: int = 200, headers: Mapping[str, str] = TEXT_HEADERS) -> web.Response:
    return web.Response(status=status, body=text.encode(), headers=headers)


def _endpoint(kind: str, accepts: admission.Schema, decide: Decide, body_timeout_s: float) -> Handler:
    record = METRICS.record
    clock = time.perf_counter

    async def handle(request: web.BaseRequest) -> web.Response:
        started = clock()
        if request.content.is_eof():  # the whole body came with the headers (the apiserver's case): no timer
            body = await request.read()
        else:
            try:
                async with asyncio.timeout(body_timeout_s):
                    body = await request.read()
            except TimeoutError:
                record(kind, "unknown", "malformed", None)
                return _text(f"request body not received within {body_timeout_s:g}s\n", 408)
        try:
            review = admission.decode(body, accepts)
            outcome = await decide(review)
        except admission.BadReview as err:
            record(kind, "unknown", "malformed", None)
            return _text(f"malformed AdmissionReview: {err}\n", 400)
        except (TypeError, AttributeError, KeyError, ValueError) as err:
            # A structurally valid review whose object has the wrong shape (e.g. "annotations": 5).
            log.warning("malformed object in review", extra={"endpoint": kind, "error": type(err).__name__})
            record(kind, "unknown", "malformed", None)
            return _text(f"malformed object in AdmissionReview: {type(err).__name__}\n", 400)
        assert review.request is not None  # admission.decode guarantees it
        record(kind, review.request.operation, outcome.result, clock() - started)
        return web.Response(body=outcome.body, headers=JSON_HEADERS)

    return handle


def routes(deps: Deps) -> dict[tuple[str, str], Handler]:
    """(method, path) -> handler for every path the server answers."""

    async def healthz(_: web.BaseRequest) -> web.Response:
        problems = []
        if deps.stopping:
            problems.append("shutting down")
        if deps.tls is not None and not deps.tls.loaded:
            problems.append("tls certificate not loaded")
        if not deps.accounts.synced:
            problems.append("serviceaccount cache not synced")
        if problems:
            return _text("; ".join(problems) + "\n", 503)
        return _text("ok\n")

    async def livez(_: web.BaseRequest) -> web.Response:
        ended = [task.get_name() for task in deps.core_tasks if task.done()]
        if ended:
            return _text(f"background work ended: {', '.join(ended)}\n", 503)
        return _text("ok\n")

    return {
        ("POST", "/mutate/gitrepository"): _endpoint(
            "GitRepository",
            GITREPOSITORY_REVIEWS,
            functools.partial(review_gitrepository, config=deps.config, secrets=deps.secrets),
            deps.config.header_timeout_s,
        ),
        ("POST", "/mutate/pod"): _endpoint(
            "Pod",
            POD_REVIEWS,
            functools.partial(review_pod, config=deps.config, accounts=deps.accounts),
            deps.config.header_timeout_s,
        ),
        ("GET", "/healthz"): healthz,
        ("GET", "/readyz"): healthz,
        ("GET", "/livez"): livez,
    }


def make_server(deps: Deps) -> BoundedServer:
    """The low-level aiohttp server: exact-path dispatch, 404 for unknown paths, 405 for a wrong method; its
    connections bounded in time and number (``webhook.connections``)."""
    table = routes(deps)
    allowed: dict[str, list[str]] = {}
    for method, path in table:
        allowed.setdefault(path, []).append(method)
    config = deps.config
    max_body = config.max_body_bytes
    server: BoundedServer

    async def dispatch(request: web.BaseRequest) -> web.StreamResponse:
        # The raw path, not request.path: the apiserver adds "?timeout=5s", and building a URL object to drop it
        # costs more than the whole route lookup. Paths are compared exactly, as the apiserver sends them.
        path = request.raw_path.partition("?")[0]
        handler = table.get((request.method, path))
        if handler is not None:
            protocol = request.protocol
            server.started(protocol)
            try:
                return await handler(request)
            finally:
                server.finished(protocol)
        if path in allowed:
            methods = ", ".join(sorted(allowed[path]))
            return _text(
                f"method {request.method} not allowed; use {methods}\n", 405, {**TEXT_HEADERS, "Allow": methods}
            )
        return _text(f"no such path: {path}\n", 404)

    loop = asyncio.get_running_loop()

    def request_factory(
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> web.BaseRequest:
        # The body cap: BaseRequest.read() answers 413 past it, before any JSON is parsed.
        return web.BaseRequest(message, payload, protocol, writer, task, loop, client_max_size=max_body)

    server = BoundedServer(
        dispatch,
        request_factory=request_factory,
        access_log=None,
        max_connections=config.max_connections,
        header_timeout_s=config.header_timeout_s,
        idle_timeout_s=config.idle_timeout_s,
    )
    return server


async def metrics_server(address: tuple[str, int]) -> web.AppRunner:
    """/metrics over plain HTTP on its own port, so a NetworkPolicy can open it to monitoring alone while the
    admission port stays open to the apiserver."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, *address).start()
    return runner


async def serve(config: WebhookConfig, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set: the HTTPS server, certificate reloads and the ServiceAccount watch."""
    tls = ReloadingTLS(config.tls_cert_file, config.tls_key_file)
    tasks = [asyncio.create_task(tls.watch(config.cert_reload_seconds), name="certificate-reload")]
    api: client.ApiClient | None = None
    accounts: ServiceAccounts
    if config.serviceaccounts_file:
        accounts = StaticServiceAccounts(config.serviceaccounts_file)
    else:
        api = await api_client(config.kubeconfig)
        cache = ServiceAccountCache(api, config.serviceaccount_lookup_timeout)
        tasks.append(asyncio.create_task(cache.informer.run(), name="serviceaccount-watch"))
        accounts = cache
    secrets = SecretKeyLookup(api if config.secret_warnings else None, config.secret_lookup_timeout)
    deps = Deps(config, accounts, secrets, tls, tasks)
    server = make_server(deps)
    runner = web.ServerRunner(server, handle_signals=False)
    await runner.setup()
    listener = await listen(server, config.host, config.port, tls.context)
    metrics = await metrics_server(config.metrics_listen) if config.metrics_listen else None
    log.info("webhook serving", extra={"host": config.host, "port": config.port})
    try:
        await stop.wait()
        # Terminating: the endpoint is being removed from the Service, but kube-proxy and the apiserver can still
        # send new connections for a moment. Refusing them would fail admissions (seen in a rollout on a real
        # node): serve on, not ready, for the delay.
        deps.stopping = True
        log.info("webhook shutting down", extra={"delay_s": config.shutdown_delay_s})
        await asyncio.sleep(config.shutdown_delay_s)
    finally:
        log.info("webhook stopping")
        listener.close()  # no new connections; those open finish their request (runner.cleanup)
        await runner.cleanup()
        if metrics is not None:
            await metrics.cleanup()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if api is not None:
            await api.close()


async def run(config: WebhookConfig) -> None:
    await run_until_signalled(lambda stop: serve(config, stop))
