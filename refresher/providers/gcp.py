"""Google access tokens from a service-account key (or an external_account / workload identity federation
config), through google-auth; refresh runs in a worker thread so the event loop never blocks on it.

Keyless (a tenant's ServiceAccount, ``GcpIdentity``): its Kubernetes token (TokenRequest, audience the Workload
Identity Federation provider named on it) is exchanged at ``--gcp-sts-url``, then, where the ServiceAccount names a
Google service account, traded for that account's token at ``--gcp-iam-credentials-url`` (generateAccessToken).

Key files come from tenants' Secrets, so they are untrusted input: a key's ``token_uri`` must be an allowed
Google token endpoint (else a tenant could aim the refresher at an internal URL), and an external_account must
be file-sourced with Google's STS as ``token_url`` (no URL- or executable-sourced credentials, which would make
the refresher fetch URLs or run commands of a tenant's choosing). The controller serves external_account only
in --identity-namespaces, since its source file lives in the refresher's own pod.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from refresher.credentials import GcpIdentity, GcpKey, Proxy
from refresher.errors import PermanentError, TemporaryError
from refresher.plan import MintRequest
from refresher.providers import Token, TokenRequester, proxy_failed

if TYPE_CHECKING:
    import google.auth.exceptions
    import requests

# google-auth (with requests) is imported at the first Google mint, not at start: about 6 MB a cluster without
# Google credentials never needs.

GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
GOOGLE_STS_URL = "https://sts.googleapis.com/v1/token"
GOOGLE_IAM_CREDENTIALS_URL = "https://iamcredentials.googleapis.com"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"


class GcpProvider:
    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        timeout_s: float = 15.0,
        token_urls: tuple[str, ...] = (GOOGLE_TOKEN_URL,),
        sts_url: str = GOOGLE_STS_URL,
        iam_url: str = GOOGLE_IAM_CREDENTIALS_URL,
        token_request: TokenRequester | None = None,
    ) -> None:
        self._clock = clock
        # proxy fingerprint ("": none, the environment's HTTPS_PROXY / NO_PROXY) -> its session (pooled connections)
        self._sessions: dict[str, requests.Session] = {}
        self._timeout = timeout_s
        self._token_urls = token_urls
        self._sts_url = sts_url
        self._iam_url = iam_url.rstrip("/")
        self._token_request = token_request

    def check(self, key: GcpKey) -> None:
        """Refuse key files that would point the refresher somewhere other than Google."""
        info = key.info
        if info.get("type") == "service_account":
            if info.get("token_uri") not in self._token_urls:
                raise PermanentError(
                    f"gcpServiceAccount token_uri {info.get('token_uri')!r} is not an allowed Google token endpoint "
                    f"({', '.join(self._token_urls)})",
                    "InvalidKey",
                )
            return
        source = info.get("credential_source")
        if not isinstance(source, dict) or set(source) - {"file", "format"} or "file" not in source:
            raise PermanentError(
                "gcpServiceAccount external_account must use a file credential_source (url and executable "
                "sources are refused)",
                "InvalidKey",
            )
        if info.get("token_url") != self._sts_url:
            raise PermanentError(f"gcpServiceAccount external_account token_url must be {self._sts_url}", "InvalidKey")
        impersonation = info.get("service_account_impersonation_url")
        if impersonation and not str(impersonation).startswith(self._iam_url + "/"):
            raise PermanentError(
                f"gcpServiceAccount service_account_impersonation_url must start with {self._iam_url}/",
                "InvalidKey",
            )

    def _keyless(self, identity: GcpIdentity, subject_token: str, scopes: tuple[str, ...]) -> Any:
        """google-auth's workload identity federation credentials, fed the ServiceAccount token we requested
        (a supplier: no file, no URL, no command), and impersonating where the ServiceAccount says so."""
        from google.auth import identity_pool

        class Supplier(identity_pool.SubjectTokenSupplier):
            def get_subject_token(self, context: Any, request: Any) -> str:
                return subject_token

        impersonation = (
            f"{self._iam_url}/v1/projects/-/serviceAccounts/{identity.impersonate}:generateAccessToken"
            if identity.impersonate
            else None
        )
        return identity_pool.Credentials(  # type: ignore[no-untyped-call]
            audience=identity.audience,
            subject_token_type=JWT_TOKEN_TYPE,
            token_url=self._sts_url,
            subject_token_supplier=Supplier(),
            service_account_impersonation_url=impersonation,
            scopes=list(scopes),
        )

    def _credentials(self, key: GcpKey, scopes: tuple[str, ...]) -> Any:
        import google.auth.exceptions
        from google.auth import identity_pool
        from google.oauth2 import service_account

        self.check(key)
        info = dict(key.info)
        try:
            if info.get("type") == "service_account":
                return service_account.Credentials.from_service_account_info(info, scopes=list(scopes))  # type: ignore[no-untyped-call]
            return identity_pool.Credentials.from_info(info, scopes=list(scopes))  # type: ignore[no-untyped-call]
        except (ValueError, google.auth.exceptions.GoogleAuthError) as err:
            # google-auth's messages can quote the key material: keep only the kind of problem.
            raise PermanentError(
                f"gcpServiceAccount is not a usable key ({type(err).__name__}): paste the JSON key file as is",
                "InvalidKey",
            ) from None

    def _refresh(self, credentials: Any, proxy: Proxy | None) -> None:
        import google.auth.transport.requests
        import requests

        key = proxy.fingerprint if proxy is not None else ""
        session = self._sessions.get(key)
        if session is None:
            session = self._sessions[key] = requests.Session()
            if proxy is not None:
                # The object's proxy, whatever the environment says (requests would let HTTPS_PROXY win)
                session.trust_env = False
                session.proxies = {"https": proxy.url(), "http": proxy.url()}
        request = google.auth.transport.requests.Request(session)
        credentials.refresh(request)

    async def mint(self, request: MintRequest) -> Token:
        key = request.credential
        assert isinstance(key, GcpKey | GcpIdentity)
        if isinstance(key, GcpIdentity):
            if self._token_request is None:
                raise PermanentError("keyless Google is not set up in this refresher", "IdentityUnavailable")
            subject = await self._token_request(key.namespace, key.service_account, key.audience)
            credentials = self._keyless(key, subject, request.scopes)
        else:
            credentials = self._credentials(key, request.scopes)
        import google.auth.exceptions
        import requests

        issued = self._clock()
        try:
            async with asyncio.timeout(self._timeout):
                await asyncio.to_thread(self._refresh, credentials, request.proxy)
        except TimeoutError:
            raise TemporaryError("Google token endpoint timed out", "Unreachable") from None
        except (google.auth.exceptions.RefreshError, google.auth.exceptions.OAuthError) as err:
            # OAuthError: STS refused the exchange (workload identity federation)
            raise _refresh_error(err, key) from None
        except (google.auth.exceptions.TransportError, requests.RequestException) as err:
            # type names only: a ProxyError's text quotes the proxy URL, credentials included
            if proxy_failed(err):
                raise TemporaryError(
                    "Google token endpoint unreachable: the proxy failed", "ProxyUnreachable"
                ) from None
            raise TemporaryError(f"Google token endpoint unreachable: {type(err).__name__}", "Unreachable") from None
        expiry = credentials.expiry
        if not credentials.token or expiry is None:
            raise TemporaryError("Google answered without access_token/expires_in", "BadResponse")
        expires = expiry.replace(tzinfo=dt.UTC).timestamp() if expiry.tzinfo is None else expiry.timestamp()
        return Token(str(credentials.token), key.username, issued, expires)


def _refresh_error(
    err: google.auth.exceptions.RefreshError | google.auth.exceptions.OAuthError, key: GcpKey | GcpIdentity
) -> PermanentError | TemporaryError:
    """Google's own words (OAuth/STS ``error``/``error_description``, or IAM's ``error.status``/``message``),
    never the request: no token, no assertion."""
    body: Any = err.args[1] if len(err.args) > 1 else {}
    if isinstance(body, str | bytes):
        try:
            body = json.loads(body)
        except ValueError:
            body = {}
    if not isinstance(body, dict):
        body = {}
    nested = body.get("error")
    status = 0
    if isinstance(nested, dict):  # IAM Credentials: {"error": {"code": 403, "message": ..., "status": ...}}
        code, description = str(nested.get("status", "")) or "refused", str(nested.get("message", ""))[:160]
        status = int(nested["code"]) if isinstance(nested.get("code"), int) else 0
    else:
        code, description = str(nested or "") or "refused", str(body.get("error_description", ""))[:160]
    said = f"{code}: {description}" if description else code
    if getattr(err, "retryable", False) or status >= 500 or status == 429:
        return TemporaryError(f"Google token endpoint failed ({said})", "Unavailable")
    if isinstance(key, GcpIdentity):
        return PermanentError(
            f'Google refused ServiceAccount "{key.service_account}" ({said}): check the workload identity pool '
            f"provider {key.audience.removeprefix('//iam.googleapis.com/')} trusts this cluster's issuer"
            + (f" and may impersonate {key.impersonate} (roles/iam.workloadIdentityUser)" if key.impersonate else ""),
            "Unauthorized",
        )
    return PermanentError(
        f"Google refused the service-account key ({said}): check gcpServiceAccount (key revoked or disabled?)",
        "Unauthorized",
    )
