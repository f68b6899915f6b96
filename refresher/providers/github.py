"""GitHub App installation tokens (REST API: POST /app/installations/{id}/access_tokens).

The App authenticates with an RS256 JWT (iat = now - 60 s against clock drift, exp 9 minutes later, iss = the
App ID). The installation is found by ID, else by owner (orgs, then users), else from a repository. Errors:
401/404/422 are permanent and say which key to fix; 429, a rate-limited 403 and 5xx are temporary and honour
``Retry-After`` / ``x-ratelimit-reset``.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from common import names
from common.times import parse_rfc3339
from refresher.credentials import GITHUB_DEFAULT_API, GitHubApp, Proxy
from refresher.errors import PermanentError, TemporaryError
from refresher.plan import MintRequest
from refresher.providers import Token

log = logging.getLogger(__name__)

JWT_BACKDATE_S = 60
JWT_LIFETIME_S = 540  # GitHub allows at most 10 minutes
API_VERSION = "2022-11-28"
MIN_KEY_BITS, MAX_KEY_BITS = 2048, 8192  # GitHub generates 2048-bit keys
MAX_LIST_PAGES = 50  # GET /installation/repositories, 100 a page: installations of up to 5,000 repositories


def load_app_key(pem: bytes) -> rsa.RSAPrivateKey:
    """An App's RSA private key, checked by what matters here: it signs, and its signature verifies.

    OpenSSL's full RSA validation costs ~50 ms a key, and 100 Apps made it most of the refresher's start (5 s).
    A key whose parameters are inconsistent signs wrongly, and a signature that does not verify is never sent
    (a faulty RSA signature can give the key away): the round trip costs ~1 ms and refuses those keys too.
    """
    key = serialization.load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=True)
    if not isinstance(key, rsa.RSAPrivateKey) or not MIN_KEY_BITS <= key.key_size <= MAX_KEY_BITS:
        raise ValueError("not an RSA key of 2048 to 8192 bits")
    probe = key.sign(b"flux-passwordless key check", padding.PKCS1v15(), hashes.SHA256())
    key.public_key().verify(probe, b"flux-passwordless key check", padding.PKCS1v15(), hashes.SHA256())
    return key


class GitHubProvider:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        clock: Callable[[], float] = time.time,
        timeout_s: float = 15.0,
        api_urls: tuple[str, ...] = (GITHUB_DEFAULT_API,),
    ) -> None:
        self._session = session
        # The only API bases a credentials Secret may name (--github-api-urls): a tenant's Secret could otherwise
        # aim the refresher, with its network position and the App's JWT, at any HTTPS service it can name, and
        # read that service's answer back in its Events.
        self._api_urls = frozenset(api_urls)
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._installations: dict[tuple[str, str, str], str] = {}  # (fingerprint, kind, value) -> id
        # CA bundle digest -> context: credentials sharing a CA share one context, hence pooled connections
        self._ssl: dict[str, ssl.SSLContext] = {}
        # fingerprint -> loaded key (see load_app_key), signing with it costs ~1 ms
        self._keys: dict[str, rsa.RSAPrivateKey] = {}

    def app_jwt(self, credential: GitHubApp) -> str:
        now = int(self._clock())
        claims = {"iat": now - JWT_BACKDATE_S, "exp": now + JWT_LIFETIME_S, "iss": credential.app_id}
        try:
            key = self._keys.get(credential.fingerprint)
            if key is None:
                key = self._keys[credential.fingerprint] = load_app_key(credential.private_key)
            return jwt.encode(claims, key, algorithm="RS256")
        except (ValueError, TypeError, UnsupportedAlgorithm, InvalidSignature, jwt.PyJWTError):
            # The library's message may quote the key: never pass it on.
            raise PermanentError(
                "githubAppPrivateKey is not a usable RSA private key: use the .pem file GitHub generated for "
                f"App {credential.app_id}",
                "InvalidKey",
            ) from None

    def forget(self, fingerprints: set[str]) -> None:
        """Drop the loaded keys of credentials no longer in use (rotated or deleted)."""
        for fingerprint in [f for f in self._keys if f not in fingerprints]:
            del self._keys[fingerprint]

    async def mint(self, request: MintRequest) -> Token:
        credential = request.credential
        assert isinstance(credential, GitHubApp)
        app_jwt = self.app_jwt(credential)
        if credential.api_base not in self._api_urls:
            raise PermanentError(
                f"{names.KEY_GITHUB_BASE_URL[0]} {credential.api_base} is not a GitHub API this refresher may call "
                f"(--github-api-urls: {', '.join(sorted(self._api_urls))}): ask the cluster admin to allow it",
                "ApiNotAllowed",
            )
        installation = await self._installation_id(credential, request.installation, app_jwt, request.proxy)
        body: dict[str, Any] = {"permissions": dict(request.permissions)}
        if request.repositories is not None:
            body["repositories"] = list(request.repositories)
        issued = self._clock()
        status, headers, data = await self._call(
            "POST",
            f"{credential.api_base}/app/installations/{installation}/access_tokens",
            app_jwt,
            body,
            credential=credential,
            proxy=request.proxy,
        )
        if status == 404:
            self._forget(credential, request.installation)
        if status != 201:
            raise self._error(status, headers, data, credential, request, installation)
        try:
            token = str(data["token"])
            expires = parse_rfc3339(str(data["expires_at"]))
        except (KeyError, ValueError, TypeError):
            raise TemporaryError("GitHub answered 201 without token/expires_at", "BadResponse") from None
        return Token(token, names.GITHUB_USERNAME, issued, expires)

    async def reachable(self, request: MintRequest) -> frozenset[str] | None:
        """The repositories (names) the request's installation can reach, or None when that cannot be told
        within ``MAX_LIST_PAGES``: asked after a 422, so one unreachable repository fails only the objects that
        name it. Costs one installation token with ``metadata: read`` (every App has it) and one call per 100
        repositories of the installation."""
        credential = request.credential
        assert isinstance(credential, GitHubApp)
        app_jwt = self.app_jwt(credential)
        installation = await self._installation_id(credential, request.installation, app_jwt, request.proxy)
        status, headers, data = await self._call(
            "POST",
            f"{credential.api_base}/app/installations/{installation}/access_tokens",
            app_jwt,
            {"permissions": {"metadata": "read"}},
            credential=credential,
            proxy=request.proxy,
        )
        if status != 201 or not isinstance(data, dict) or not isinstance(data.get("token"), str):
            raise self._error(status, headers, data, credential, None, installation)
        token = str(data["token"])
        found: set[str] = set()
        for page in range(1, MAX_LIST_PAGES + 1):
            status, headers, data = await self._call(
                "GET",
                f"{credential.api_base}/installation/repositories?per_page=100&page={page}",
                token,
                credential=credential,
                proxy=request.proxy,
            )
            if status != 200 or not isinstance(data, dict):
                raise self._error(status, headers, data, credential, None, installation)
            listed = data.get("repositories") or []
            found.update(str(r["name"]) for r in listed if isinstance(r, dict) and "name" in r)
            if not listed or len(found) >= int(data.get("total_count") or 0):
                return frozenset(found)
        return None

    def _forget(self, credential: GitHubApp, locator: tuple[str, str] | None) -> None:
        if locator:
            self._installations.pop((credential.fingerprint, *locator), None)

    async def _installation_id(
        self, credential: GitHubApp, locator: tuple[str, str] | None, app_jwt: str, proxy: Proxy | None = None
    ) -> str:
        if locator is None:
            raise PermanentError(
                "cannot tell which installation to use: set githubAppInstallationID (or githubAppInstallationOwner) "
                "in the credentials Secret, or use a GitHub repository URL",
                "MissingKey",
            )
        kind, value = locator
        if kind == "id":
            return value
        cache_key = (credential.fingerprint, kind, value)
        if cache_key in self._installations:
            return self._installations[cache_key]
        if kind == "owner":
            paths = [f"/orgs/{value}/installation", f"/users/{value}/installation"]
            hint = f"githubAppInstallationOwner {value!r}"
        else:
            paths = [f"/repos/{value}/installation"]
            hint = f"the repository {value}"
        for path in paths:
            status, headers, data = await self._call(
                "GET", credential.api_base + path, app_jwt, credential=credential, proxy=proxy
            )
            if status == 200 and isinstance(data, dict) and "id" in data:
                found = str(data["id"])
                self._installations[cache_key] = found
                return found
            if status != 404:
                raise self._error(status, headers, data, credential, None, None)
        raise PermanentError(
            f"GitHub App {credential.app_id} is not installed for {hint}: install it there, or set "
            "githubAppInstallationID",
            "InstallationNotFound",
        )

    def _ssl_for(self, credential: GitHubApp) -> ssl.SSLContext | bool:
        """GitHub Enterprise behind a private CA: trust the credentials Secret's ca.crt (as git will)."""
        ca = credential.tls.get("ca.crt")
        if not ca:
            return True
        digest = hashlib.sha256(ca).hexdigest()
        context = self._ssl.get(digest)
        if context is None:
            try:
                context = ssl.create_default_context(cadata=ca.decode())
            except (ssl.SSLError, ValueError):
                raise PermanentError(
                    "ca.crt in the credentials Secret is not a PEM certificate", "InvalidKey"
                ) from None
            self._ssl[digest] = context
        return context

    async def _call(
        self,
        method: str,
        url: str,
        bearer: str,
        body: dict[str, Any] | None = None,
        *,
        credential: GitHubApp,
        proxy: Proxy | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        """One API call, authenticated as the App (its JWT) or as an installation (a token); through the object's
        proxy (spec.proxySecretRef) when it names one, else as the environment says (HTTPS_PROXY, NO_PROXY: the
        session trusts it)."""
        headers = {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {bearer}",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": "flux-passwordless",
        }
        try:
            via: dict[str, Any] = {}
            if proxy is not None:
                via["proxy"] = proxy.address
                if proxy.username:
                    via["proxy_auth"] = aiohttp.BasicAuth(proxy.username, proxy.password)
            async with self._session.request(
                method, url, json=body, headers=headers, timeout=self._timeout, ssl=self._ssl_for(credential), **via
            ) as resp:
                try:
                    data = await resp.json(content_type=None)
                except ValueError:
                    data = None
                return resp.status, dict(resp.headers), data
        except aiohttp.ClientProxyConnectionError:
            raise TemporaryError("GitHub API unreachable: no connection to the proxy", "ProxyUnreachable") from None
        except aiohttp.ClientHttpProxyError as err:
            raise TemporaryError(f"GitHub API unreachable: the proxy answered {err.status}", "ProxyRefused") from None
        except (TimeoutError, aiohttp.ClientError) as err:
            raise TemporaryError(f"GitHub API unreachable: {type(err).__name__}", "Unreachable") from None

    def _error(
        self,
        status: int,
        headers: dict[str, str],
        data: Any,
        credential: GitHubApp,
        request: MintRequest | None,
        installation: str | None,
    ) -> PermanentError | TemporaryError:
        said = str(data.get("message", ""))[:160] if isinstance(data, dict) else ""
        lower = {k.lower(): v for k, v in headers.items()}
        retry_after = _retry_after(lower, self._clock())
        rate_limited = lower.get("x-ratelimit-remaining") == "0" or "rate limit" in said.lower()
        if status == 429 or (status == 403 and (rate_limited or "retry-after" in lower)):
            return TemporaryError(f"GitHub rate limit ({status}); retrying after the reset", "RateLimited", retry_after)
        if status >= 500:
            return TemporaryError(f"GitHub API error {status}", "Unavailable", retry_after)
        if status == 401:
            return PermanentError(
                f"GitHub rejected the App's JWT (401 {said or 'Bad credentials'}): check that githubAppID "
                f"{credential.app_id} and githubAppPrivateKey belong to the same App",
                "Unauthorized",
            )
        if status == 404:
            return PermanentError(
                f"GitHub App {credential.app_id} has no installation {installation}: check githubAppInstallationID",
                "InstallationNotFound",
            )
        if status == 422:
            scope = ", ".join(request.repositories or ()) if request else ""
            return PermanentError(
                f"GitHub refused the token's scope (422 {said}): check that the installation can reach "
                f"{scope or 'the repositories'} and the {names.ANNOTATION_GITHUB_PERMISSIONS} annotation",
                "ScopeRefused",
            )
        if status == 403:
            return PermanentError(f"GitHub refused (403 {said}): check the App's permissions", "Forbidden")
        return TemporaryError(f"GitHub API answered {status}", "Unavailable", retry_after)


def _retry_after(headers: dict[str, str], now: float) -> float | None:
    value = headers.get("retry-after")
    if value is not None:
        try:
            return max(float(value), 0.0)
        except ValueError:
            pass
    reset = headers.get("x-ratelimit-reset")
    if reset is not None and headers.get("x-ratelimit-remaining") == "0":
        try:
            return max(float(reset) - now, 0.0)
        except ValueError:
            pass
    return None
