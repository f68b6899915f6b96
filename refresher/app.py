"""The refresher process: providers, the controller (under leader election when asked), health and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
from aiohttp import web
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from common import httpserver, names
from common.connections import STATUS_LIMITS
from common.kube import TRANSPORT_ERRORS, api_client, read_json
from common.process import run_until_signalled
from refresher.cluster import KubeCluster
from refresher.config import RefresherConfig
from refresher.controller import Controller
from refresher.errors import PermanentError, TemporaryError
from refresher.events import EventRecorder, Reporter
from refresher.index import Index, informers
from refresher.leader import LeaderElector
from refresher.providers import Provider, TokenRequester
from refresher.providers.azure import AzureProvider
from refresher.providers.gcp import GcpProvider
from refresher.providers.github import GitHubProvider

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_TOKEN_SECONDS = 600


def token_requester(api: client.ApiClient) -> TokenRequester:
    """A short-lived token for a tenant's ServiceAccount (TokenRequest), for per-object identity (Azure, Google);
    failures are ``MintError``s, told on the objects."""
    core = client.CoreV1Api(api)

    async def request(namespace: str, service_account: str, audience: str) -> str:
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"audiences": [audience], "expirationSeconds": SERVICE_ACCOUNT_TOKEN_SECONDS},
        }
        try:
            answer = await read_json(
                core.create_namespaced_service_account_token(service_account, namespace, body, _preload_content=False)  # type: ignore[arg-type]
            )
        except TRANSPORT_ERRORS:
            raise TemporaryError("ServiceAccount token request failed: apiserver unreachable", "Unavailable") from None
        except ApiException as err:
            if err.status == 404:
                raise PermanentError(
                    f'ServiceAccount "{service_account}" not found', "ServiceAccountNotFound"
                ) from None
            if err.status == 403:
                raise PermanentError(
                    "the refresher may not request ServiceAccount tokens (serviceaccounts/token: create): apply "
                    "manifests/overlays/per-object-identity",
                    "TokenRequestForbidden",
                ) from None
            raise TemporaryError(f"ServiceAccount token request failed (HTTP {err.status})", "Unavailable") from None
        token = (answer.get("status") or {}).get("token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise TemporaryError("ServiceAccount token request answered without a token", "BadResponse")
        return token

    return request


class Refresher:
    """Everything the process runs, so tests can run several in one event loop."""

    def __init__(self, config: RefresherConfig, api: client.ApiClient, session: aiohttp.ClientSession) -> None:
        self.config = config
        self.api = api
        self.providers: dict[str, Provider] = {
            names.PROVIDER_GITHUB: GitHubProvider(session, api_urls=config.github_api_urls),
            names.PROVIDER_GCP: GcpProvider(
                token_urls=config.gcp_token_urls,
                sts_url=config.gcp_sts_url,
                iam_url=config.gcp_iam_credentials_url,
                token_request=token_requester(api),
            ),
            names.PROVIDER_AZURE: AzureProvider(
                token_requester(api),
                username=config.azure_username,
                tenant_id=config.azure_tenant_id,
                authority=config.azure_authority_host,
                connection_verify=config.azure_ca_file,
            ),
        }
        self.events = EventRecorder(client.CoreV1Api(api))
        self.controller: Controller | None = None
        self.ended: str | None = None  # why the work stopped, if it ever does
        self.elector = (
            LeaderElector(client.CoordinationV1Api(api), config.lease_namespace, config.lease_name, config.identity)
            if config.leader_elect
            else None
        )

    async def _lead(self) -> None:
        # A new leader starts from fresh caches: what it knows comes from the cluster, not from an earlier term.
        index = Index(self.config.rules)
        self.controller = Controller(
            self.config,
            self.providers,
            Reporter(self.events),
            KubeCluster(self.api, self.config.write_concurrency),
            index,
            informers(index, self.api, self.config.namespaces, self.config.watch_label_selector),
        )
        try:
            await self.controller.run()
        finally:
            self.controller = None

    async def run(self) -> None:
        if self.elector is not None:
            await self.elector.run(self._lead)
        else:
            await self._lead()

    async def aclose(self) -> None:
        """Release what the providers hold (azure-identity's HTTP sessions)."""
        provider = self.providers[names.PROVIDER_AZURE]
        if isinstance(provider, AzureProvider):
            await provider.close()

    def start(self) -> asyncio.Task[None]:
        """Run in the background. The work is meant to run until cancelled: if it ends any other way, ``/livez``
        fails from then on, so Kubernetes restarts the pod instead of leaving a replica that renews nothing."""
        task = asyncio.create_task(self.run())
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        self.ended = type(error).__name__ if error is not None else "returned"
        log.error("refresher loop ended: reporting not alive", extra={"error": self.ended})

    @property
    def ready(self) -> bool:
        if self.elector is not None and not self.elector.leading:
            return True  # a standby is ready to take over
        return self.controller is not None and self.controller.synced

    def status_routes(self) -> httpserver.Routes:
        """/healthz, /livez, /readyz and /metrics, for ``common.httpserver.start``."""

        async def healthz(_: web.BaseRequest) -> web.Response:
            if self.ended is not None:
                return httpserver.text(f"refresher loop ended ({self.ended})\n", 503)
            return httpserver.text("ok\n")

        async def readyz(_: web.BaseRequest) -> web.Response:
            if self.ready:
                return httpserver.text("ok\n")
            return httpserver.text("caches not synced\n", 503)

        return {
            ("GET", "/healthz"): healthz,
            ("GET", "/livez"): healthz,
            ("GET", "/readyz"): readyz,
            ("GET", "/metrics"): httpserver.metrics,
        }


async def serve(config: RefresherConfig, stop: asyncio.Event) -> None:
    # writers + 3 watches per scope + event workers + a little headroom
    api = await api_client(config.kubeconfig, config.write_concurrency + 3 * max(len(config.namespaces), 1) + 8)
    # trust_env: GitHub calls honour HTTPS_PROXY / NO_PROXY as the Google (requests) and Entra (azure-core) ones do
    async with api, aiohttp.ClientSession(trust_env=True) as session:
        refresher = Refresher(config, api, session)
        status = await httpserver.start(refresher.status_routes(), *config.listen, STATUS_LIMITS)
        log.info("refresher started", extra={"identity": config.identity, "leader_elect": config.leader_elect})
        task = refresher.start()
        try:
            await stop.wait()
        finally:
            log.info("refresher stopping")
            task.cancel()  # releases the lease on the way out
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await status.close()
            await refresher.aclose()


async def run(config: RefresherConfig) -> None:
    await run_until_signalled(lambda stop: serve(config, stop))
