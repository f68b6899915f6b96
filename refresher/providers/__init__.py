"""Token providers behind one small interface: ``await provider.mint(request) -> Token``.

Every failure is raised as ``PermanentError`` or ``TemporaryError`` (refresher.errors); raw key material
stays inside the credential and the provider using it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from refresher.plan import MintRequest

# (namespace, ServiceAccount, audience) -> a short-lived token of that ServiceAccount (Kubernetes TokenRequest)
TokenRequester = Callable[[str, str, str], Awaitable[str]]


@dataclass(frozen=True)
class Token:
    value: str = field(repr=False)
    username: str
    issued_at: float  # epoch seconds
    expires_at: float  # epoch seconds


class Provider(Protocol):
    async def mint(self, request: MintRequest) -> Token: ...


@runtime_checkable
class ListsRepositories(Protocol):
    """A provider whose scoped tokens can be refused for one repository (GitHub): it can say which repositories
    an installation reaches (None: it cannot tell)."""

    async def reachable(self, request: MintRequest) -> frozenset[str] | None: ...


def proxy_failed(err: BaseException) -> bool:
    """Whether a transport error came from the proxy (the SDKs wrap it: requests' ProxyError inside google-auth's
    TransportError, aiohttp's ClientProxyConnectionError inside azure-core's ServiceRequestError)."""
    seen: BaseException | None = err
    for _ in range(10):
        if seen is None:
            return False
        if "Proxy" in type(seen).__name__:
            return True
        inner = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        seen = seen.__cause__ or seen.__context__ or inner
    return False
