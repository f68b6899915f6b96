"""A local Google OAuth 2.0 token endpoint (RFC 7523 JWT-bearer grant), STS token exchange (workload identity
federation) and IAM Credentials ``generateAccessToken``.

The JWT assertion is verified with the service account's public key (kid = private_key_id, iss = client_email,
aud = Google's token endpoint, scope present, at most one hour). Answers carry Google's fields and errors
(``invalid_grant`` / ``Invalid JWT Signature.``); 5xx can be injected.

STS, for a pool provider this fake was told to ``trust``: the subject token is a Kubernetes ServiceAccount token,
verified as Google does — signature with the issuer's public key, ``iss`` the provider's issuer, ``aud`` the
provider's full name (``//iam.googleapis.com/projects/...`` or with ``https:``), not expired — and the federated
token stands for ``principal://iam.googleapis.com/<pool>/subject/<sub>``. ``generateAccessToken`` answers only
for a principal ``allow``ed on that Google service account (roles/iam.workloadIdentityUser), with IAM's error
shape (``{"error": {"code", "message", "status"}}``) otherwise.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.serving import serving

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
IAM_PREFIX = "//iam.googleapis.com/"
# The audience Google's token endpoint requires in the assertion, whatever URL the key's token_uri names.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"


@dataclass
class FakeGoogle:
    token_lifetime_s: int = 3600
    keys: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # key id -> (client_email, public PEM)
    issued: dict[str, tuple[str, float]] = field(default_factory=dict)  # token -> (email, expires_at)
    subject_tokens: set[str] = field(default_factory=set)  # accepted by STS (workload identity federation)
    fail_statuses: list[int] = field(default_factory=list)
    iam_fail_statuses: list[int] = field(default_factory=list)
    url: str = ""
    # workload identity federation: pool provider name -> (issuer, issuer's public key PEM)
    providers: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    # Google service account email -> principals that may impersonate it
    bindings: dict[str, set[str]] = field(default_factory=dict)
    exchanged: list[dict[str, Any]] = field(default_factory=list)  # the verified claims of each subject token
    impersonated: list[tuple[str, str]] = field(default_factory=list)  # (principal, email)

    def trust(self, provider: str, issuer: str, public_key: bytes) -> None:
        """A pool provider (``projects/N/locations/global/workloadIdentityPools/P/providers/R``) trusting an
        OIDC issuer: a Kubernetes cluster's ServiceAccount tokens."""
        self.providers[provider] = (issuer, public_key)

    def allow(self, email: str, provider: str, namespace: str, service_account: str) -> None:
        """roles/iam.workloadIdentityUser on ``email`` for that Kubernetes ServiceAccount, via ``provider``."""
        pool = provider.rpartition("/providers/")[0]
        principal = f"principal://iam.googleapis.com/{pool}/subject/system:serviceaccount:{namespace}:{service_account}"
        self.bindings.setdefault(email, set()).add(principal)

    def service_account_key(self, email: str, project: str = "demo-project") -> dict[str, Any]:
        """A service-account key file, as the console would hand it out, registered with this fake."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_id = secrets.token_hex(20)
        self.keys[key_id] = (
            email,
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        )
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return {
            "type": "service_account",
            "project_id": project,
            "private_key_id": key_id,
            "private_key": private,
            "client_email": email,
            "client_id": str(secrets.randbits(64)),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": f"{self.url}/token",
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{email}",
        }

    def revoke(self, key_info: dict[str, Any]) -> None:
        self.keys.pop(key_info["private_key_id"], None)

    def live(self, token: str) -> bool:
        entry = self.issued.get(token)
        return entry is not None and entry[1] > time.time()

    def _issue(self, email: str) -> dict[str, Any]:
        token = "ya29." + secrets.token_urlsafe(48)
        self.issued[token] = (email, time.time() + self.token_lifetime_s)
        return {"access_token": token, "expires_in": self.token_lifetime_s, "token_type": "Bearer"}

    @staticmethod
    def _error(status: int, error: str, description: str) -> web.Response:
        return web.json_response({"error": error, "error_description": description}, status=status)

    async def token(self, request: web.Request) -> web.Response:
        if self.fail_statuses:
            return self._error(self.fail_statuses.pop(0), "internal_failure", "Backend error")
        form = await request.post()
        if form.get("grant_type") != JWT_BEARER:
            return self._error(400, "unsupported_grant_type", "Invalid grant_type")
        assertion = str(form.get("assertion", ""))
        try:
            header = jwt.get_unverified_header(assertion)
            email, public = self.keys[header["kid"]]
            claims = jwt.decode(
                assertion,
                public,
                algorithms=["RS256"],
                audience=GOOGLE_TOKEN_AUDIENCE,
                issuer=email,
                options={"require": ["iat", "exp", "iss", "aud"]},
            )
        except (KeyError, jwt.PyJWTError):
            return self._error(400, "invalid_grant", "Invalid JWT Signature.")
        if claims["exp"] - claims["iat"] > 3600 or not claims.get("scope"):
            return self._error(400, "invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        return web.json_response(self._issue(email))

    async def sts(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != TOKEN_EXCHANGE:
            return self._error(400, "unsupported_grant_type", "Invalid grant_type")
        if form.get("requested_token_type") != ACCESS_TOKEN_TYPE:
            return self._error(400, "invalid_request", "Invalid requested_token_type")
        subject = str(form.get("subject_token", ""))
        if subject in self.subject_tokens:  # an external_account file of the refresher's own pod
            principal = "federated"
        else:
            audience = str(form.get("audience", ""))
            trusted = self.providers.get(audience.removeprefix(IAM_PREFIX))
            if not audience.startswith(IAM_PREFIX) or trusted is None:
                return self._error(
                    400,
                    "invalid_target",
                    'The target service indicated by the "audience" parameters is invalid. This might either be '
                    "because the pool or provider is disabled or deleted or because it doesn't exist.",
                )
            if form.get("subject_token_type") != JWT_TOKEN_TYPE:
                return self._error(400, "invalid_request", "Invalid subject_token_type")
            issuer, public_key = trusted
            accepted = [audience, "https:" + audience]
            try:
                claims = jwt.decode(
                    subject,
                    public_key,
                    algorithms=["RS256"],
                    audience=accepted,
                    issuer=issuer,
                    options={"require": ["iss", "aud", "exp", "iat", "sub"]},
                )
            except jwt.InvalidAudienceError:
                return self._error(
                    400, "invalid_grant", f"The audience in ID Token does not match the expected audience {audience}."
                )
            except jwt.InvalidIssuerError:
                return self._error(400, "invalid_grant", "The issuer in ID Token does not match the expected issuer.")
            except jwt.ExpiredSignatureError:
                return self._error(400, "invalid_grant", "ID Token has expired.")
            except jwt.PyJWTError:
                return self._error(400, "invalid_grant", "Invalid ID Token.")
            self.exchanged.append(claims)
            pool = audience.removeprefix(IAM_PREFIX).rpartition("/providers/")[0]
            principal = f"principal://iam.googleapis.com/{pool}/subject/{claims['sub']}"
        answer = self._issue(principal)
        answer["issued_token_type"] = ACCESS_TOKEN_TYPE
        return web.json_response(answer)

    @staticmethod
    def _iam_error(status: int, message: str, reason: str) -> web.Response:
        return web.json_response({"error": {"code": status, "message": message, "status": reason}}, status=status)

    async def generate_access_token(self, request: web.Request) -> web.Response:
        """POST /v1/projects/-/serviceAccounts/{email}:generateAccessToken, bearer: a federated token."""
        if self.iam_fail_statuses:
            status = self.iam_fail_statuses.pop(0)
            return self._iam_error(status, "The service is currently unavailable.", "UNAVAILABLE")
        email, _, verb = request.match_info["target"].partition(":")
        if verb != "generateAccessToken":
            return self._iam_error(404, "Method not found.", "NOT_FOUND")
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        caller = self.issued.get(bearer)
        if caller is None or caller[1] <= time.time():
            return self._iam_error(
                401, "Request had invalid authentication credentials. Expected OAuth 2 access token.", "UNAUTHENTICATED"
            )
        try:
            body = await request.json()
        except ValueError:
            return self._iam_error(400, "Invalid JSON payload received.", "INVALID_ARGUMENT")
        if not isinstance(body, dict) or not body.get("scope"):
            return self._iam_error(400, "Scope required.", "INVALID_ARGUMENT")
        if caller[0] not in self.bindings.get(email, set()):
            return self._iam_error(
                403,
                "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
                "PERMISSION_DENIED",
            )
        self.impersonated.append((caller[0], email))
        issued = self._issue(email)
        expires = time.gmtime(time.time() + self.token_lifetime_s)
        return web.json_response(
            {"accessToken": issued["access_token"], "expireTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", expires)}
        )

    def external_account(self, subject_token_file: str) -> dict[str, Any]:
        return {
            "type": "external_account",
            "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k8s",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": f"{self.url}/v1/token",
            "credential_source": {"file": subject_token_file},
        }

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/token", self.token)
        app.router.add_post("/v1/token", self.sts)
        app.router.add_post("/v1/projects/-/serviceAccounts/{target}", self.generate_access_token)
        return app


@asynccontextmanager
async def running_google(fake: FakeGoogle, host: str = "127.0.0.1") -> AsyncIterator[FakeGoogle]:
    async with serving(fake.app(), host=host) as url:
        fake.url = url
        yield fake


def key_json(info: dict[str, Any]) -> bytes:
    return json.dumps(info, indent=2).encode()
