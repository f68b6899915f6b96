"""Google access tokens from a service-account key (or an external_account / workload identity federation
config), through google-auth. The token endpoint is the key file's own ``token_uri``; refresh runs in a worker
thread so the event loop never blocks on it."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import google.auth
import google.auth.exceptions
import google.auth.transport.requests
import requests
from google.oauth2 import service_account

from refresher.credentials import GcpKey
from refresher.errors import PermanentError, TemporaryError
from refresher.plan import MintRequest
from refresher.providers import Token


class GcpProvider:
    def __init__(self, clock: Callable[[], float] = time.time, timeout_s: float = 15.0) -> None:
        self._clock = clock
        self._session = requests.Session()
        self._timeout = timeout_s

    def _credentials(self, key: GcpKey, scopes: tuple[str, ...]) -> Any:
        info = dict(key.info)
        try:
            if info.get("type") == "service_account":
                return service_account.Credentials.from_service_account_info(info, scopes=list(scopes))  # type: ignore[no-untyped-call]
            credentials, _ = google.auth.load_credentials_from_dict(info, scopes=list(scopes))  # type: ignore[no-untyped-call]
            return credentials
        except (ValueError, google.auth.exceptions.GoogleAuthError) as err:
            # google-auth's messages can quote the key material: keep only the kind of problem.
            raise PermanentError(
                f"gcpServiceAccount is not a usable key ({type(err).__name__}): paste the JSON key file as is",
                "InvalidKey",
            ) from None

    def _refresh(self, credentials: Any) -> None:
        request = google.auth.transport.requests.Request(self._session)
        credentials.refresh(request)

    async def mint(self, request: MintRequest) -> Token:
        key = request.credential
        assert isinstance(key, GcpKey)
        credentials = self._credentials(key, request.scopes)
        issued = self._clock()
        try:
            await asyncio.wait_for(asyncio.to_thread(self._refresh, credentials), self._timeout)
        except TimeoutError:
            raise TemporaryError("Google token endpoint timed out", "Unreachable") from None
        except google.auth.exceptions.RefreshError as err:
            raise _refresh_error(err) from None
        except (google.auth.exceptions.TransportError, requests.RequestException) as err:
            raise TemporaryError(f"Google token endpoint unreachable: {type(err).__name__}", "Unreachable") from None
        expiry = credentials.expiry
        if not credentials.token or expiry is None:
            raise TemporaryError("Google answered without access_token/expires_in", "BadResponse")
        expires = expiry.replace(tzinfo=dt.UTC).timestamp() if expiry.tzinfo is None else expiry.timestamp()
        return Token(str(credentials.token), key.username, issued, expires)


def _refresh_error(err: google.auth.exceptions.RefreshError) -> PermanentError | TemporaryError:
    body = err.args[1] if len(err.args) > 1 and isinstance(err.args[1], dict) else {}
    code = str(body.get("error", "")) or "refused"
    description = str(body.get("error_description", ""))[:160]
    said = f"{code}: {description}" if description else code
    if getattr(err, "retryable", False):
        return TemporaryError(f"Google token endpoint failed ({said})", "Unavailable")
    return PermanentError(
        f"Google refused the service-account key ({said}): check gcpServiceAccount (key revoked or disabled?)",
        "Unauthorized",
    )
