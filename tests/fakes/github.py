"""A local GitHub API that speaks the real protocol for App installation tokens.

It verifies the App JWT (RS256, with the App's public key; iss, iat/exp, at most 10 minutes), answers with
GitHub's status codes and fields, enforces repository scoping, and can be told to fail next (401, 403 rate
limit, 422, 429, 5xx) with GitHub's headers. Issued tokens are recorded so the git server can accept only
live ones.
"""

from __future__ import annotations

import datetime as dt
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
from tests.support.tls import TLSFiles


def new_app_key() -> tuple[bytes, bytes]:
    """(private PEM, public PEM) for a test App."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


@dataclass
class Installation:
    id: int
    account: str
    repositories: set[str]
    app_id: int


@dataclass
class IssuedToken:
    token: str
    installation: int
    repositories: frozenset[str] | None  # None: every repository of the installation
    permissions: dict[str, str]
    expires_at: float


@dataclass
class Failure:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeGitHub:
    token_lifetime_s: float = 3600.0
    apps: dict[int, bytes] = field(default_factory=dict)  # app id -> public key PEM
    installations: dict[int, Installation] = field(default_factory=dict)
    issued: dict[str, IssuedToken] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    repository_lists: int = 0  # GET /installation/repositories answered
    url: str = ""

    def add_app(self, app_id: int, public_pem: bytes) -> None:
        self.apps[app_id] = public_pem

    def add_installation(self, installation_id: int, app_id: int, account: str, repositories: set[str]) -> None:
        self.installations[installation_id] = Installation(installation_id, account, set(repositories), app_id)

    def add_repositories(self, installation_id: int, repositories: set[str]) -> None:
        """Repositories newly granted to an installation (as when an org admin adds them to the App)."""
        self.installations[installation_id].repositories.update(repositories)

    def remove_repositories(self, installation_id: int, repositories: set[str]) -> None:
        """Repositories taken away from an installation (deleted, or removed from the App's installation)."""
        self.installations[installation_id].repositories.difference_update(repositories)

    def fail_next(self, status: int, count: int = 1, headers: dict[str, str] | None = None) -> None:
        messages = {
            401: "A JSON web token could not be decoded",
            403: "API rate limit exceeded for installation.",
            422: "There is at least one repository that does not exist or is not accessible to the parent "
            "installation.",
            429: "You have exceeded a secondary rate limit.",
        }
        body = {"message": messages.get(status, "Server Error"), "documentation_url": "https://docs.github.com/rest"}
        for _ in range(count):
            self.failures.append(Failure(status, headers or {}, body))

    def live(self, token: str, repository: str | None = None) -> bool:
        """Would GitHub's git endpoint accept this token (for ``owner/repo``) now?"""
        issued = self.issued.get(token)
        if issued is None or issued.expires_at <= time.time():
            return False
        if repository is None:
            return True
        owner, _, repo = repository.partition("/")
        installation = self.installations[issued.installation]
        if owner != installation.account or repo not in installation.repositories:
            return False
        return issued.repositories is None or repo in issued.repositories

    @property
    def mints(self) -> int:
        return len(self.token_requests)

    # --- HTTP ------------------------------------------------------------------------------------

    def _error(self, status: int, message: str) -> web.Response:
        return web.json_response(
            {"message": message, "documentation_url": "https://docs.github.com/rest"}, status=status
        )

    def _app_from_jwt(self, request: web.Request) -> int | web.Response:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return self._error(401, "Requires authentication")
        token = auth.removeprefix("Bearer ")
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
            app_id = int(unverified["iss"])
            public = self.apps[app_id]
            claims = jwt.decode(token, public, algorithms=["RS256"], options={"require": ["iat", "exp", "iss"]})
        except (jwt.PyJWTError, KeyError, ValueError, TypeError):
            return self._error(401, "A JSON web token could not be decoded")
        now = time.time()
        if claims["exp"] - claims["iat"] > 600:
            return self._error(401, "'Expiration time' claim ('exp') is too far in the future")
        if claims["iat"] > now + 60:
            return self._error(401, "'Issued at' claim ('iat') must be an Integer representing the time in the past")
        return app_id

    def _injected(self) -> web.Response | None:
        if not self.failures:
            return None
        failure = self.failures.pop(0)
        return web.json_response(failure.body, status=failure.status, headers=failure.headers)

    async def access_tokens(self, request: web.Request) -> web.Response:
        if (injected := self._injected()) is not None:
            return injected
        app = self._app_from_jwt(request)
        if isinstance(app, web.Response):
            return app
        installation = self.installations.get(int(request.match_info["id"]))
        if installation is None or installation.app_id != app:
            return self._error(404, "Not Found")
        body = await request.json() if request.can_read_body else {}
        self.token_requests.append({"installation": installation.id, **body})
        names = body.get("repositories")
        if names is not None:
            if len(names) > 500:
                return self._error(422, "Too many repositories: the limit is 500.")
            if not set(names) <= installation.repositories:
                return self._error(
                    422,
                    "There is at least one repository that does not exist or is not accessible to the parent "
                    "installation.",
                )
        permissions = body.get("permissions") or {"contents": "read", "metadata": "read"}
        token = "ghs_" + secrets.token_urlsafe(27)
        expires = time.time() + self.token_lifetime_s
        self.issued[token] = IssuedToken(
            token, installation.id, frozenset(names) if names is not None else None, permissions, expires
        )
        expires_at = dt.datetime.fromtimestamp(expires, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        answer: dict[str, Any] = {
            "token": token,
            "expires_at": expires_at,
            "permissions": permissions,
            "repository_selection": "selected" if names is not None else "all",
        }
        if names is not None:
            answer["repositories"] = [{"name": n, "full_name": f"{installation.account}/{n}"} for n in names]
        return web.json_response(answer, status=201)

    async def find_installation(self, request: web.Request) -> web.Response:
        if (injected := self._injected()) is not None:
            return injected
        app = self._app_from_jwt(request)
        if isinstance(app, web.Response):
            return app
        owner = request.match_info["owner"]
        repo = request.match_info.get("repo")
        for installation in self.installations.values():
            if (
                installation.app_id == app
                and installation.account == owner
                and (repo is None or repo in installation.repositories)
            ):
                return web.json_response(
                    {
                        "id": installation.id,
                        "account": {"login": owner},
                        "app_id": app,
                        "target_type": "Organization",
                    }
                )
        return self._error(404, "Not Found")

    async def installation_repositories(self, request: web.Request) -> web.Response:
        """GET /installation/repositories: what the installation of the calling installation token can reach,
        paginated (per_page up to 100, default 30) as GitHub does."""
        if (injected := self._injected()) is not None:
            return injected
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").removeprefix("token ")
        issued = self.issued.get(token)
        if issued is None or issued.expires_at <= time.time():
            return self._error(401, "Bad credentials")
        self.repository_lists += 1
        installation = self.installations[issued.installation]
        try:
            per_page = min(max(int(request.query.get("per_page", "30")), 1), 100)
            page = max(int(request.query.get("page", "1")), 1)
        except ValueError:
            return self._error(422, "Invalid request.")
        visible = sorted(installation.repositories)
        if issued.repositories is not None:
            visible = [name for name in visible if name in issued.repositories]
        chunk = visible[(page - 1) * per_page : page * per_page]
        return web.json_response(
            {
                "total_count": len(visible),
                "repository_selection": "selected" if issued.repositories is not None else "all",
                "repositories": [
                    {"name": name, "full_name": f"{installation.account}/{name}", "private": True} for name in chunk
                ],
            }
        )

    def app(self) -> web.Application:
        app = web.Application()
        for prefix in ("", "/api/v3"):  # api.github.com and GitHub Enterprise Server
            app.router.add_post(prefix + "/app/installations/{id}/access_tokens", self.access_tokens)
            app.router.add_get(prefix + "/orgs/{owner}/installation", self.find_installation)
            app.router.add_get(prefix + "/users/{owner}/installation", self.find_installation)
            app.router.add_get(prefix + "/repos/{owner}/{repo}/installation", self.find_installation)
            app.router.add_get(prefix + "/installation/repositories", self.installation_repositories)
        return app


@asynccontextmanager
async def running_github(fake: FakeGitHub, tls: TLSFiles) -> AsyncIterator[FakeGitHub]:
    """Serve ``fake`` over TLS (as GitHub Enterprise behind a private CA: trust ``tls.ca_pem``)."""
    async with serving(fake.app(), tls.server_context(), tls.host) as url:
        fake.url = url
        yield fake
