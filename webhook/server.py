"""The HTTPS server: routes, metrics, health, and the process lifecycle. It only decodes, calls the review
functions and encodes; decisions live in ``webhook.reviews`` and the pure modules it calls. Connections, request
heads and bodies are bounded by ``common.connections`` and ``common.bodies``; routing is ``common.httpserver``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from kubernetes_asyncio import client

from common import httpserver
from common.bodies import Bodies, Refusal
from common.connections import STATUS_LIMITS, Handler, Limits
from common.httpserver import JSON_HEADERS, text
from common.kube import api_client
from common.process import run_until_signalled
from webhook import admission
from webhook.config import WebhookConfig
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


def _endpoint(kind: str, accepts: admission.Schema, decide: Decide, bodies: Bodies) -> Handler:
    record = METRICS.record
    clock = time.perf_counter

    async def handle(request: web.BaseRequest) -> web.Response:
        started = clock()
        body = await bodies.receive(request)
        if isinstance(body, Refusal):
            METRICS.refused(kind, body.why)
            return body.response()
        try:
            review = admission.decode(body.data, accepts)
            outcome = await decide(review)
        except admission.BadReview as err:
            record(kind, "unknown", "malformed", None)
            return text(f"malformed AdmissionReview: {err}\n", 400)
        except (TypeError, AttributeError, KeyError, ValueError) as err:
            # A structurally valid review whose object has the wrong shape (e.g. "annotations": 5).
            log.warning("malformed object in review", extra={"endpoint": kind, "error": type(err).__name__})
            record(kind, "unknown", "malformed", None)
            return text(f"malformed object in AdmissionReview: {type(err).__name__}\n", 400)
        finally:
            bodies.release(body)  # the body, its decoded review and the answer are within the budget until here
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
            return text("; ".join(problems) + "\n", 503)
        return text("ok\n")

    async def livez(_: web.BaseRequest) -> web.Response:
        ended = [task.get_name() for task in deps.core_tasks if task.done()]
        if ended:
            return text(f"background work ended: {', '.join(ended)}\n", 503)
        return text("ok\n")

    config = deps.config
    bodies = Bodies(config.max_body_bytes, config.body_budget_bytes, config.header_timeout_s)
    return {
        ("POST", "/mutate/gitrepository"): _endpoint(
            "GitRepository",
            GITREPOSITORY_REVIEWS,
            functools.partial(review_gitrepository, config=config, secrets=deps.secrets),
            bodies,
        ),
        ("POST", "/mutate/pod"): _endpoint(
            "Pod", POD_REVIEWS, functools.partial(review_pod, config=config, accounts=deps.accounts), bodies
        ),
        ("GET", "/healthz"): healthz,
        ("GET", "/readyz"): healthz,
        ("GET", "/livez"): livez,
    }


def limits(config: WebhookConfig) -> Limits:
    return Limits(
        max_connections=config.max_connections,
        header_timeout_s=config.header_timeout_s,
        idle_timeout_s=config.idle_timeout_s,
        max_header_bytes=config.max_header_bytes,
    )


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
    admission_port = await httpserver.start(routes(deps), config.host, config.port, limits(config), tls.context)
    metrics = (
        await httpserver.start({("GET", "/metrics"): httpserver.metrics}, *config.metrics_listen, STATUS_LIMITS)
        if config.metrics_listen
        else None
    )
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
        await admission_port.close()  # no new connections; those open finish their request
        if metrics is not None:
            await metrics.close()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if api is not None:
            await api.close()


async def run(config: WebhookConfig) -> None:
    await run_until_signalled(lambda stop: serve(config, stop))
