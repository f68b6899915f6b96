"""An in-memory stand-in for the apiserver side of the refresher, for unit tests of its loop.

``MemoryCluster`` implements ``refresher.cluster.Cluster`` over a dict and feeds the ``Index`` the way the real
watches would (our labelled Secrets to ``on_output``, opted-in ones to ``on_opt_in``), so a second pass sees
what the first one wrote. It counts writes and can be told to fail the next calls. ``ScriptedProvider`` mints
tokens on a fake clock, or raises the errors it is given. ``EventLog`` records Events instead of sending them.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from common import names
from common.objects import Key
from refresher.errors import MintError, PermanentError
from refresher.events import EventType
from refresher.index import Index
from refresher.plan import MintRequest
from refresher.providers import Token
from refresher.targets import Invalid, Target


def b64(value: str | bytes) -> str:
    return base64.b64encode(value if isinstance(value, bytes) else value.encode()).decode()


@dataclass
class MemoryCluster:
    index: Index
    secrets: dict[Key, dict[str, Any]] = field(default_factory=dict)
    service_accounts: dict[Key, dict[str, Any]] = field(default_factory=dict)
    writes: list[tuple[str, Key]] = field(default_factory=list)  # ("create" | "apply", key)
    reads: int = 0
    fail_next: list[BaseException] = field(default_factory=list)  # raised by the next calls, in order
    version: int = 0  # the last resourceVersion given (every stored change gets the next)

    def _stamp(self, obj: dict[str, Any]) -> str:
        self.version += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.version)
        return str(self.version)

    def _maybe_fail(self) -> None:
        if self.fail_next:
            raise self.fail_next.pop(0)

    def put_secret(self, namespace: str, name: str, data: dict[str, bytes], **meta: Any) -> None:
        """A Secret as a user would create it (and as the watches would report it)."""
        obj = {
            "metadata": {"namespace": namespace, "name": name, "uid": f"uid-{name}", **meta},
            "data": {k: b64(v) for k, v in data.items()},
        }
        self.secrets[(namespace, name)] = obj
        self._stamp(obj)
        self._notify(obj)

    def _notify(self, obj: dict[str, Any]) -> None:
        labels = obj["metadata"].get("labels") or {}
        if labels.get(names.LABEL_MANAGED_BY) == names.MANAGED_BY_VALUE:
            self.index.on_output("MODIFIED", copy.deepcopy(obj))
        if names.LABEL_PROVIDER in labels:
            self.index.on_opt_in("MODIFIED", copy.deepcopy(obj))

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._maybe_fail()
        self.reads += 1
        found = self.secrets.get((namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def read_service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._maybe_fail()
        found = self.service_accounts.get((namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def create_secret(self, namespace: str, body: dict[str, Any]) -> str:
        self._maybe_fail()
        key = (namespace, body["metadata"]["name"])
        if key in self.secrets:
            raise ApiException(status=409, reason="AlreadyExists")
        self.writes.append(("create", key))
        self.secrets[key] = copy.deepcopy(body)
        version = self._stamp(self.secrets[key])
        self._notify(self.secrets[key])
        return version

    async def apply_secret(self, namespace: str, name: str, body: dict[str, Any]) -> str:
        self._maybe_fail()
        key = (namespace, name)
        self.writes.append(("apply", key))
        current = self.secrets.setdefault(key, {"metadata": {"namespace": namespace, "name": name}})
        for part in ("data",):
            current.setdefault(part, {}).update(body.get(part) or {})
        meta = current["metadata"]
        meta.setdefault("annotations", {}).update(body["metadata"].get("annotations") or {})
        for field_name in ("labels", "ownerReferences"):
            if field_name in body["metadata"]:
                meta[field_name] = copy.deepcopy(body["metadata"][field_name])
        if "type" in body:
            current["type"] = body["type"]
        version = self._stamp(current)
        self._notify(current)
        return version

    def replay(self, index: Index) -> None:
        """Feed every stored Secret to ``index``, as a new leader's informers list them."""
        for obj in list(self.secrets.values()):
            labels = obj["metadata"].get("labels") or {}
            if labels.get(names.LABEL_MANAGED_BY) == names.MANAGED_BY_VALUE:
                index.on_output("ADDED", copy.deepcopy(obj))
            if names.LABEL_PROVIDER in labels:
                index.on_opt_in("ADDED", copy.deepcopy(obj))

    def password(self, namespace: str, name: str) -> str | None:
        data = (self.secrets.get((namespace, name)) or {}).get("data") or {}
        value = data.get(names.KEY_PASSWORD)
        return base64.b64decode(value).decode() if value else None


@dataclass
class ScriptedProvider:
    clock: Callable[[], float]
    lifetime_s: float = 3600.0
    errors: list[MintError] = field(default_factory=list)  # raised by the next mints, in order
    mints: list[MintRequest] = field(default_factory=list)  # every attempt
    issued: int = 0
    reach: set[str] | None = None  # the installation's repositories (None: any), as GitHub checks a scope
    listings: int = 0  # reachable() calls

    async def mint(self, request: MintRequest) -> Token:
        self.mints.append(request)
        if self.errors:
            raise self.errors.pop(0)
        if self.reach is not None and request.repositories and not set(request.repositories) <= self.reach:
            raise PermanentError(
                "GitHub refused the token's scope (422 There is at least one repository that does not exist or is "
                "not accessible to the parent installation.)",
                "ScopeRefused",
            )
        self.issued += 1
        now = self.clock()
        return Token(f"token-{self.issued}", names.GITHUB_USERNAME, now, now + self.lifetime_s)

    async def reachable(self, request: MintRequest) -> frozenset[str] | None:
        self.listings += 1
        return frozenset(self.reach) if self.reach is not None else None


@dataclass
class EventLog:
    events: list[tuple[str, str, str, str]] = field(default_factory=list)  # (object, type, reason, message)

    def emit_for(self, target: Target | Invalid, event_type: EventType, reason: str, message: str) -> None:
        self.events.append((target.name, event_type, reason, message))

    async def drain(self, within_s: float = 5.0) -> None:
        return None

    def reasons(self, name: str) -> list[str]:
        return [reason for obj, _, reason, _ in self.events if obj == name]


@dataclass
class FakeClock:
    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
