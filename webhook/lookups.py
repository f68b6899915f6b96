"""What the webhook reads from the cluster: ServiceAccount annotations (watch-backed cache) and the key names
of a credentials Secret (one short GET, for warnings only).

Lookups are best effort: any failure (an error status, a dropped or refused connection, a timeout, a body
that is not what we expect) is logged by type and answered with what is known without it, never raised, so
an apiserver blip never turns an admission answer into a 500.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from common.gitrepository import SecretKeys, SecretLookup
from common.informer import Informer
from common.kube import read_json
from webhook.injectors import SA_ANNOTATIONS_READ

log = logging.getLogger(__name__)

EMPTY: Mapping[str, str] = {}


def _relevant(obj: Mapping[str, Any]) -> Mapping[str, str]:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    kept = {k: v for k, v in annotations.items() if k in SA_ANNOTATIONS_READ}
    return kept or EMPTY


class ServiceAccounts(Protocol):
    @property
    def synced(self) -> bool: ...

    async def annotations(self, namespace: str, name: str) -> Mapping[str, str]: ...


class StaticServiceAccounts:
    """From a JSON file ``{"namespace/name": {annotation: value}}``: local runs and benchmarks."""

    synced = True

    def __init__(self, path: Path) -> None:
        data = json.loads(path.read_text())
        self._by_key = {key: _relevant({"metadata": {"annotations": ann}}) for key, ann in data.items()}

    async def annotations(self, namespace: str, name: str) -> Mapping[str, str]:
        return self._by_key.get(f"{namespace}/{name}", EMPTY)


class ServiceAccountCache:
    """All ServiceAccounts' relevant annotations, kept by list+watch.

    A miss costs one GET with a short timeout: the pod may name an SA created a moment ago, before its watch
    event arrived.
    """

    def __init__(self, api: client.ApiClient, miss_timeout: float = 1.0) -> None:
        self._core = client.CoreV1Api(api)
        self._by_key: dict[str, Mapping[str, str]] = {}
        self._miss_timeout = miss_timeout
        self.informer = Informer(
            self._core.list_service_account_for_all_namespaces,
            self._on_event,
            self._on_relist,
            what="serviceaccounts",
        )

    @property
    def synced(self) -> bool:
        return self.informer.synced.is_set()

    @staticmethod
    def _key(obj: Mapping[str, Any]) -> str:
        meta = obj.get("metadata") or {}
        return f"{meta.get('namespace')}/{meta.get('name')}"

    def _on_relist(self, keys: set[tuple[str, str]]) -> None:
        listed = {f"{ns}/{name}" for ns, name in keys}
        for key in [k for k in self._by_key if k not in listed]:
            del self._by_key[key]

    def _on_event(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "DELETED":
            self._by_key.pop(self._key(obj), None)
        else:
            self._by_key[self._key(obj)] = _relevant(obj)

    async def annotations(self, namespace: str, name: str) -> Mapping[str, str]:
        key = f"{namespace}/{name}"
        found = self._by_key.get(key)
        if found is not None:
            return found
        try:
            obj = await read_json(
                self._core.read_namespaced_service_account(
                    name, namespace, _preload_content=False, _request_timeout=self._miss_timeout
                )
            )
            found = _relevant(obj)
        except ApiException as err:
            if err.status != 404:
                log.warning("serviceaccount lookup failed", extra={"serviceaccount": key, "status": err.status})
            return EMPTY
        except Exception as err:  # best effort: see the module's docstring
            log.warning("serviceaccount lookup failed", extra={"serviceaccount": key, "error": type(err).__name__})
            return EMPTY
        self._by_key[key] = found
        return found


class SecretKeyLookup:
    """Key names (never values) of a Secret, to warn about missing credentials."""

    def __init__(self, api: client.ApiClient | None, timeout: float = 2.0) -> None:
        self._core = client.CoreV1Api(api) if api else None
        self._timeout = timeout

    async def keys(self, namespace: str, name: str) -> SecretKeys:
        if self._core is None:
            return SecretLookup.UNKNOWN
        try:
            obj = await read_json(
                self._core.read_namespaced_secret(
                    name, namespace, _preload_content=False, _request_timeout=self._timeout
                )
            )
            return frozenset((obj.get("data") or {}).keys()) | frozenset((obj.get("stringData") or {}).keys())
        except ApiException as err:
            return SecretLookup.MISSING if err.status == 404 else SecretLookup.UNKNOWN
        except Exception as err:  # best effort: see the module's docstring
            log.warning("secret lookup failed", extra={"secret": f"{namespace}/{name}", "error": type(err).__name__})
            return SecretLookup.UNKNOWN
