"""Microsoft Entra tokens for Azure DevOps (scope 499b84ac-.../.default) through azure-identity.

- The refresher's own identity (namespaces in --identity-namespaces only): workload identity when the pod has
  ``AZURE_FEDERATED_TOKEN_FILE`` (set by the Azure Workload Identity webhook), else managed identity (IMDS).
- A tenant's ServiceAccount (``spec.serviceAccountName``): a Kubernetes TokenRequest for audience
  ``api://AzureADTokenExchange`` exchanged through a client-assertion credential, with the tenant and client
  from the ServiceAccount's ``azure.workload.identity/*`` annotations.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from common import names
from refresher.credentials import AzureIdentity, Proxy
from refresher.errors import MintError, PermanentError, TemporaryError
from refresher.plan import MintRequest
from refresher.providers import Token, TokenRequester, proxy_failed

if TYPE_CHECKING:
    from azure.core.exceptions import ClientAuthenticationError

# azure-identity is imported at the first Azure mint, not at start: about 10 MB a cluster without Azure
# identities never needs.

# (namespace, serviceaccount, audience) -> a short-lived ServiceAccount token


class AzureProvider:
    def __init__(
        self,
        token_request: TokenRequester,
        username: str = names.AZURE_DEFAULT_USERNAME,
        tenant_id: str | None = None,
        authority: str | None = None,
        connection_verify: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._token_request = token_request
        self._username = username
        self._tenant_id = tenant_id or os.environ.get("AZURE_TENANT_ID")
        self._authority = authority or os.environ.get("AZURE_AUTHORITY_HOST") or None
        self._kwargs: dict[str, Any] = {}
        if connection_verify:
            self._kwargs["connection_verify"] = connection_verify
        self._clock = clock
        self._own: dict[str, Any] = {}  # proxy fingerprint ("": none) -> the refresher's own credential

    def _own_credential(self, proxy: Proxy | None) -> Any:
        key = proxy.fingerprint if proxy is not None else ""
        own = self._own.get(key)
        if own is None:
            from azure.identity.aio import ManagedIdentityCredential, WorkloadIdentityCredential

            kwargs = self._with(proxy)
            if os.environ.get("AZURE_FEDERATED_TOKEN_FILE"):
                own = WorkloadIdentityCredential(authority=self._authority, **kwargs)
            else:
                own = ManagedIdentityCredential(**kwargs)
            self._own[key] = own
        return own

    def _with(self, proxy: Proxy | None) -> dict[str, Any]:
        """The credential's settings; an object's proxy as azure-core takes it (else the environment's)."""
        if proxy is None:
            return self._kwargs
        return {**self._kwargs, "proxies": {"https": proxy.url(), "http": proxy.url()}}

    async def mint(self, request: MintRequest) -> Token:
        identity = request.credential
        assert isinstance(identity, AzureIdentity)
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
        from azure.identity import CredentialUnavailableError

        issued = self._clock()
        try:
            if identity.service_account is None:
                access = await self._own_credential(request.proxy).get_token(*request.scopes)
            else:
                access = await self._as_service_account(identity, request.scopes, request.proxy)
        except MintError:
            raise
        except CredentialUnavailableError as err:
            raise PermanentError(
                f"no Azure identity available to the refresher ({type(err).__name__}): give its pod workload "
                "identity or a managed identity, or set spec.serviceAccountName",
                "IdentityUnavailable",
            ) from None
        except ClientAuthenticationError as err:
            status = getattr(getattr(err, "response", None), "status_code", None)
            if status is not None and (status >= 500 or status == 429):
                raise TemporaryError(f"Entra ID answered {status}", "Unavailable") from None
            raise PermanentError(
                f"Entra ID refused the identity ({_aad_code(err)}): check the federated credential of client "
                f"{identity.client_id or '(refresher)'} for this ServiceAccount",
                "Unauthorized",
            ) from None
        except (ServiceRequestError, HttpResponseError, OSError) as err:
            if proxy_failed(err):
                raise TemporaryError("Entra ID unreachable: no connection to the proxy", "ProxyUnreachable") from None
            raise TemporaryError(f"Entra ID unreachable: {type(err).__name__}", "Unreachable") from None
        return Token(access.token, self._username, issued, float(access.expires_on))

    async def _as_service_account(
        self, identity: AzureIdentity, scopes: tuple[str, ...], proxy: Proxy | None = None
    ) -> Any:
        assert identity.service_account is not None
        assert identity.client_id
        tenant = identity.tenant_id or self._tenant_id
        if not tenant:
            raise PermanentError(
                f'ServiceAccount "{identity.service_account}" lacks annotation {names.AZURE_ANNOTATION_TENANT_ID} '
                "(and the refresher has no default tenant)",
                "MissingKey",
            )
        assertion = await self._token_request(identity.namespace, identity.service_account, names.AZURE_TOKEN_AUDIENCE)
        from azure.identity.aio import ClientAssertionCredential

        credential = ClientAssertionCredential(
            tenant, identity.client_id, lambda: assertion, authority=self._authority, **self._with(proxy)
        )
        async with credential:
            return await credential.get_token(*scopes)

    async def close(self) -> None:
        for own in self._own.values():
            await own.close()


def _aad_code(err: ClientAuthenticationError) -> str:
    """The AADSTS code (no token, no assertion) from Entra's error, e.g. AADSTS70021."""
    message = str(getattr(err, "message", "") or err)
    for word in message.replace(":", " ").split():
        if word.startswith("AADSTS"):
            return word
    return "invalid_client"
