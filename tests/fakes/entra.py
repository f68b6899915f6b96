"""A local Microsoft Entra ID token endpoint over TLS, and an IMDS endpoint.

Token endpoint: ``POST /{tenant}/oauth2/v2.0/token``, client-credentials grant with a client assertion (workload
identity federation). The assertion is a Kubernetes ServiceAccount token: verified with the issuer's public key,
audience ``api://AzureADTokenExchange``, subject matched against the client's federated credentials. Errors carry
Entra's AADSTS codes. IMDS: ``GET /metadata/identity/oauth2/token`` with ``Metadata: true``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web

from tests.support.serving import serving
from tests.support.tls import TLSFiles

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
AUDIENCE = "api://AzureADTokenExchange"


@dataclass
class FakeEntra:
    issuer_public_key: bytes  # the cluster's ServiceAccount signing key (PEM)
    token_lifetime_s: int = 3599
    federated: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (tenant, client) -> subjects
    issued: dict[str, float] = field(default_factory=dict)
    imds_requests: int = 0
    url: str = ""
    imds_url: str = ""

    def federate(self, tenant: str, client: str, namespace: str, service_account: str) -> None:
        self.federated.setdefault((tenant, client), set()).add(f"system:serviceaccount:{namespace}:{service_account}")

    def live(self, token: str) -> bool:
        return self.issued.get(token, 0) > time.time()

    def _issue(self) -> tuple[str, int]:
        token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + secrets.token_urlsafe(64)
        self.issued[token] = time.time() + self.token_lifetime_s
        return token, self.token_lifetime_s

    @staticmethod
    def _error(status: int, error: str, code: str, text: str) -> web.Response:
        body = {
            "error": error,
            "error_description": f"{code}: {text} Trace ID: {secrets.token_hex(8)}",
            "error_codes": [int(code.removeprefix("AADSTS"))],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        }
        return web.json_response(body, status=status)

    async def token(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        form = await request.post()
        if form.get("grant_type") != "client_credentials" or form.get("client_assertion_type") != ASSERTION_TYPE:
            return self._error(400, "unsupported_grant_type", "AADSTS70003", "The app requested an unsupported grant.")
        client = str(form.get("client_id", ""))
        subjects = self.federated.get((tenant, client))
        if subjects is None:
            return self._error(400, "unauthorized_client", "AADSTS700016", f"Application '{client}' was not found.")
        try:
            claims = jwt.decode(
                str(form.get("client_assertion", "")), self.issuer_public_key, algorithms=["RS256"], audience=AUDIENCE
            )
        except jwt.PyJWTError:
            return self._error(401, "invalid_client", "AADSTS700024", "Client assertion is not within its valid range.")
        if claims.get("sub") not in subjects:
            return self._error(
                400,
                "invalid_request",
                "AADSTS70021",
                "No matching federated identity record found for presented assertion.",
            )
        if not str(form.get("scope", "")).endswith("/.default"):
            return self._error(400, "invalid_scope", "AADSTS1002012", "The provided value for scope is not valid.")
        token, lifetime = self._issue()
        return web.json_response(
            {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token}
        )

    async def imds(self, request: web.Request) -> web.Response:
        if request.headers.get("Metadata") != "true":
            return web.json_response(
                {"error": "invalid_request", "error_description": "Required metadata header not specified"}, status=400
            )
        self.imds_requests += 1
        token, lifetime = self._issue()
        answer: dict[str, Any] = {
            "access_token": token,
            "expires_in": str(lifetime),
            "expires_on": str(int(time.time()) + lifetime),
            "resource": request.query.get("resource", ""),
            "token_type": "Bearer",
        }
        return web.json_response(answer)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self.token)
        return app

    def imds_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metadata/identity/oauth2/token", self.imds)
        return app


@asynccontextmanager
async def running_entra(fake: FakeEntra, tls: TLSFiles) -> AsyncIterator[FakeEntra]:
    # IMDS is plain HTTP, as on Azure.
    async with (
        serving(fake.app(), tls.server_context(), tls.host) as url,
        serving(fake.imds_app(), host=tls.host) as imds_url,
    ):
        fake.url, fake.imds_url = url, imds_url
        yield fake
