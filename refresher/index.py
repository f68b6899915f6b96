"""What the informers keep: small derived state per watched object (never whole objects), and the targets it
adds up to.

Three watches per namespace scope: GitRepositories (translated ones become targets; unmanaged ones that name a
Secret are kept as references, for the GitHub scope of an opted-in Secret), opted-in Secrets (targets, with the
digest of what they hold), and our own output Secrets (owner and digest, so a write happens only on change).
Every change sets ``wake`` so the loop runs a pass.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import client

from common import names
from common.informer import Informer
from common.objects import Key, key_of, meta
from refresher.outputs import OPT_IN_KEYS, digest, held_token
from refresher.providers import Token
from refresher.sharding import combined
from refresher.targets import Invalid, Rules, Target, from_gitrepository, from_opted_in_secret


@dataclass(frozen=True, slots=True)
class Reference:
    """An unmanaged GitRepository naming a Secret: if that Secret is opted in, its token must cover ``url``."""

    secret: str
    url: str


@dataclass(frozen=True, slots=True)
class OptIn:
    target: Target | Invalid
    digest: bytes  # of the username/password it holds


@dataclass(frozen=True, slots=True)
class Output:
    owner_uid: str
    digest: bytes  # of every field we own
    resource_version: str = ""  # the version this describes ("": unknown)


class Index:
    def __init__(self, rules: Rules) -> None:
        self._rules = rules
        self.gitrepos: dict[Key, Target | Invalid] = {}
        self.references: dict[Key, Reference] = {}
        self.opt_ins: dict[Key, OptIn] = {}
        self.outputs: dict[Key, Output] = {}
        # (namespace, token key) -> the longest-lived token a Secret of ours holds: what a new leader adopts
        self.held: dict[Key, Token] = {}
        self.wake = asyncio.Event()

    # --- informer callbacks ---------------------------------------------------------------------

    def on_gitrepo(self, kind: str, obj: dict[str, Any]) -> None:
        key = key_of(obj)
        self.gitrepos.pop(key, None)
        self.references.pop(key, None)
        if kind != "DELETED":
            target = from_gitrepository(obj, self._rules)
            if target is not None:
                self.gitrepos[key] = target
            else:
                spec = obj.get("spec") or {}
                secret, url = (spec.get("secretRef") or {}).get("name"), spec.get("url")
                if secret and url:
                    self.references[key] = Reference(str(secret), str(url))
        self.wake.set()

    def on_opt_in(self, kind: str, obj: dict[str, Any]) -> None:
        key = key_of(obj)
        target = from_opted_in_secret(obj, self._rules) if kind != "DELETED" else None
        if target is None:
            self.opt_ins.pop(key, None)
        else:
            self.opt_ins[key] = OptIn(target, digest(obj, OPT_IN_KEYS))
            if isinstance(target, Target):
                self._hold(key[0], obj)
        self.wake.set()

    def on_output(self, kind: str, obj: dict[str, Any]) -> None:
        key = key_of(obj)
        if kind == "DELETED":
            self.outputs.pop(key, None)
        else:
            version = str(meta(obj).get("resourceVersion") or "")
            known = self.outputs.get(key)
            if version and known is not None and known.resource_version == version:
                return  # the watch's echo of our own write (or a relist of what we saw): nothing new, no pass
            owners = meta(obj).get("ownerReferences") or [{}]
            self.outputs[key] = Output(str(owners[0].get("uid", "")), digest(obj), version)
            self._hold(key[0], obj)
        self.wake.set()

    def wrote(self, key: Key, output: Output, token_key: str, token: Token) -> None:
        """Our write of an output Secret succeeded: what it holds is known without waiting for its watch event
        (which is then skipped by its resourceVersion: 10,000 writes no longer cost 10,000 digests and passes)."""
        self.outputs[key] = output
        if token_key:
            self.hold(key[0], token_key, token)

    def _hold(self, namespace: str, obj: dict[str, Any]) -> None:
        held = held_token(obj)
        if held is not None:
            self.hold(namespace, *held)

    def hold(self, namespace: str, token_key: str, token: Token) -> None:
        # Keyed by the Secret's own namespace: a token key is only ever looked up for its own namespace, so
        # a tenant can at most confuse its own tokens (and the next renewal replaces them).
        current = self.held.get((namespace, token_key))
        if current is None or token.expires_at > current.expires_at:
            self.held[(namespace, token_key)] = token

    def retain_held(self, keys: set[Key]) -> None:
        for key in [k for k in self.held if k not in keys]:
            del self.held[key]

    def relisted(self, *stores: dict[Key, Any], namespace: str | None = None) -> Callable[[set[Key]], None]:
        """The on_relist callback of an informer feeding ``stores`` (within ``namespace``, or everywhere): drop
        every key the fresh list no longer holds."""

        def prune(keys: set[Key]) -> None:
            for store in stores:
                for key in [k for k in store if (namespace is None or k[0] == namespace) and k not in keys]:
                    del store[key]
            self.wake.set()

        return prune

    # --- what it adds up to -----------------------------------------------------------------------

    def targets(self) -> Iterator[Target | Invalid]:
        """Every target: translated GitRepositories, then opted-in Secrets (a GitHub one's repositories widened
        by those of the unmanaged GitRepositories that reference it)."""
        yield from self.gitrepos.values()
        referenced: dict[Key, list[str]] = {}
        for (namespace, _), ref in self.references.items():
            referenced.setdefault((namespace, ref.secret), []).append(ref.url)
        for key, opt_in in self.opt_ins.items():
            target = opt_in.target
            if isinstance(target, Target) and target.provider == names.PROVIDER_GITHUB:
                urls = tuple(sorted({*target.urls, *referenced.get(key, ())}))
                if urls != target.urls:
                    target = dataclasses.replace(target, urls=urls)
            yield target


def informers(index: Index, api: client.ApiClient, namespaces: tuple[str, ...], selector: str = "") -> list[Informer]:
    """The list+watches feeding ``index``: three per namespace in ``namespaces``, or three cluster-wide; each
    narrowed to the shard's ``selector`` (refresher.sharding) when there is one."""
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    group, version, plural = names.FLUX_SOURCE_GROUP, "v1", names.GITREPOSITORY_PLURAL
    ours = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY_VALUE}"
    result = []
    scopes: list[str | None] = list(namespaces) or [None]
    for ns in scopes:
        where = "" if ns is None else f"/{ns}"
        list_git: Callable[..., Any]
        list_secrets: Callable[..., Any]
        git_args: tuple[str, ...]
        secret_args: tuple[str, ...]
        if ns is None:
            list_git, git_args = custom.list_cluster_custom_object, (group, version, plural)
            list_secrets, secret_args = core.list_secret_for_all_namespaces, ()
        else:
            list_git, git_args = custom.list_namespaced_custom_object, (group, version, ns, plural)
            list_secrets, secret_args = core.list_namespaced_secret, (ns,)
        result += [
            Informer(
                list_git,
                index.on_gitrepo,
                index.relisted(index.gitrepos, index.references, namespace=ns),
                what=f"gitrepositories{where}",
                label_selector=selector or None,
                list_args=git_args,
            ),
            Informer(
                list_secrets,
                index.on_opt_in,
                index.relisted(index.opt_ins, namespace=ns),
                what=f"secrets(opt-in){where}",
                label_selector=combined(selector, names.LABEL_PROVIDER),
                list_args=secret_args,
            ),
            Informer(
                list_secrets,
                index.on_output,
                index.relisted(index.outputs, namespace=ns),
                what=f"secrets(ours){where}",
                label_selector=combined(selector, ours),
                list_args=secret_args,
            ),
        ]
    return result
