"""Which tokens to mint, and which Secrets each one fills. Pure.

A token is minted once per distinct (namespace, credential, scope): every target of one namespace sharing a
credential shares its token. Never across namespaces: namespaces are tenants, and one App installed for two
tenants must not give either a token that reaches the other's repositories.
For GitHub the scope is the union of the repositories those targets serve (at most 500 per token, split
beyond) with their permissions; ``installation`` scoping turns that off.

The plan carries everything the loop needs per token: the request to mint it, the targets it fills (each with
its own credential, whose TLS files are copied), and its renewal window (the largest consumer window among
them). The loop never goes back to the pairs.
"""

from __future__ import annotations

import functools
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from common import names
from refresher.credentials import AzureIdentity, Credential, GcpIdentity, GcpKey, GitHubApp, Proxy
from refresher.targets import Target, TargetKey

MAX_REPOSITORIES = 500


@functools.lru_cache(maxsize=1 << 17)
def github_repository(url: str) -> tuple[str, str] | None:
    """(owner, repo) of ``https://host/owner/repo(.git)``, or of a bare ``owner/repo``. Remembered: every pass
    plans every object again, and the URLs rarely change."""
    path = urlsplit(url).path if "://" in url else url
    parts = [p for p in path.strip("/").split("/") if p]
    if len(parts) < 2:
        return None
    owner, repo = parts[-2], parts[-1].removesuffix(".git")
    return (owner, repo) if owner and repo else None


@dataclass(frozen=True)
class MintKey:
    """One token: the tenant (namespace), the credential's fingerprint and the provider-specific scope."""

    provider: str
    namespace: str
    fingerprint: str
    scope: tuple[str, ...]

    @functools.cached_property
    def digest(self) -> str:
        """A short stable hash of the whole key, written next to the token (``flux-passwordless.io/token-key``)."""
        text = "\0".join((self.provider, self.namespace, self.fingerprint, *self.scope))
        return hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class MintRequest:
    key: MintKey
    credential: Credential
    installation: tuple[str, str] | None = None  # github: ("id", "123") | ("owner", "org") | ("repo", "o/r")
    repositories: tuple[str, ...] | None = None  # github: repo names; None = the whole installation
    permissions: tuple[tuple[str, str], ...] = ()
    scopes: tuple[str, ...] = ()  # gcp / azure OAuth scopes
    proxy: Proxy | None = None  # the targets' spec.proxySecretRef: the mint goes through it


Pair = tuple[Target, Credential]


@dataclass
class PlannedToken:
    request: MintRequest
    members: list[Pair]  # the targets it fills
    window_s: float = 0.0  # renew at least this long before expiry

    def add(self, pair: Pair) -> None:
        self.members.append(pair)
        self.window_s = max(self.window_s, pair[0].consumer_window_s)


# (namespace, credential fingerprint, installation locator): a GitHub installation as one tenant reaches it
InstallationKey = tuple[str, str, tuple[str, str] | None]


@dataclass(frozen=True)
class Unreachable:
    """A target naming repositories its installation cannot reach (GitHub answered 422 and the installation's
    repository list says which): ``served`` when its other repositories still got a token."""

    target: Target
    repositories: tuple[str, ...]  # owner/name, as its own URLs say
    served: bool


@dataclass(frozen=True)
class Plan:
    tokens: dict[MintKey, PlannedToken]
    unreachable: list[Unreachable] = field(default_factory=list)

    def assignment(self) -> dict[TargetKey, MintKey]:
        """target -> the token it receives (for tests and diagnostics; the loop walks ``tokens``)."""
        return {target.key: key for key, planned in self.tokens.items() for target, _ in planned.members}


def _github_locator(credential: GitHubApp, urls: Iterable[str]) -> tuple[str, str] | None:
    if credential.installation_id:
        return ("id", credential.installation_id)
    if credential.installation_owner:
        return ("owner", credential.installation_owner)
    for url in urls:
        repo = github_repository(url)
        if repo:
            return ("repo", f"{repo[0]}/{repo[1]}")
    return None


def make_plan(
    targets: Iterable[Pair],
    github_scope: str = "repositories",
    gcp_scopes: tuple[str, ...] = (names.GCP_DEFAULT_SCOPE,),
    azure_scope: str = names.AZURE_DEVOPS_SCOPE,
    unreachable: Mapping[InstallationKey, frozenset[str]] | None = None,
    proxies: Mapping[TargetKey, Proxy] | None = None,
) -> Plan:
    """``unreachable``: repositories known to be out of an installation's reach. They are left out of every
    token's scope, so one object naming a deleted or uninstalled repository does not fail the token it would
    otherwise share; that object alone is listed in ``Plan.unreachable`` (and gets no token if it names nothing
    else).

    ``proxies``: the proxy each target's mints go through (``spec.proxySecretRef``); targets behind different
    proxies (or none) never share a token request, so each mint goes the way its objects' traffic may go."""
    tokens: dict[MintKey, PlannedToken] = {}
    refused: list[Unreachable] = []
    proxies = proxies or {}

    def via(target: Target) -> tuple[Proxy | None, tuple[str, ...]]:
        proxy = proxies.get(target.key)
        return proxy, ((f"proxy={proxy.fingerprint}",) if proxy is not None else ())

    def assign(request: MintRequest, pair: Pair) -> None:
        planned = tokens.get(request.key)
        if planned is None:
            planned = tokens[request.key] = PlannedToken(request, [])
        planned.add(pair)

    # github targets are grouped first: their scope depends on every target sharing the credential
    github_groups: dict[tuple[str, str, tuple[str, str] | None, tuple[tuple[str, str], ...], Proxy | None], list[Pair]]
    github_groups = defaultdict(list)
    for target, credential in sorted(targets, key=lambda tc: tc[0].key):
        if isinstance(credential, GitHubApp):
            # An installation is per account: a repository URL locates it only for its own owner.
            urls = target.urls
            locator = _github_locator(credential, urls)
            if locator and locator[0] == "repo":
                locator = ("repo-owner", locator[1].split("/")[0])
            permissions = tuple(sorted(target.permissions.items()))
            group = (target.namespace, credential.fingerprint, locator, permissions, proxies.get(target.key))
            github_groups[group].append((target, credential))
        elif isinstance(credential, (GcpKey, GcpIdentity)):
            proxy, through = via(target)
            key = MintKey(names.PROVIDER_GCP, target.namespace, credential.fingerprint, (*gcp_scopes, *through))
            assign(MintRequest(key, credential, scopes=gcp_scopes, proxy=proxy), (target, credential))
        elif isinstance(credential, AzureIdentity):
            proxy, through = via(target)
            key = MintKey(names.PROVIDER_AZURE, target.namespace, credential.fingerprint, (azure_scope, *through))
            assign(MintRequest(key, credential, scopes=(azure_scope,), proxy=proxy), (target, credential))
    for (namespace, fingerprint, locator, permissions, proxy), members in github_groups.items():
        credential = members[0][1]
        assert isinstance(credential, GitHubApp)
        installation = _installation(locator, members)
        if github_scope == "installation":
            chunks: list[tuple[list[Pair], tuple[str, ...] | None]] = [(members, None)]
        else:
            out_of_reach = (unreachable or {}).get((namespace, fingerprint, installation), frozenset())
            chunks = _chunk(members, out_of_reach, refused)
        for chunk_members, repos in chunks:
            scope = ("installation",) if repos is None else repos
            scope_key = (
                *(f"{k}={v}" for k, v in permissions),
                f"installation={installation[0]}:{installation[1]}" if installation else "installation=?",
                *((f"proxy={proxy.fingerprint}",) if proxy is not None else ()),
                *scope,
            )
            key = MintKey(names.PROVIDER_GITHUB, namespace, fingerprint, scope_key)
            request = MintRequest(
                key, credential, installation=installation, repositories=repos, permissions=permissions, proxy=proxy
            )
            for pair in chunk_members:
                assign(request, pair)
    return Plan(tokens, refused)


def _installation(locator: tuple[str, str] | None, members: list[Pair]) -> tuple[str, str] | None:
    if locator is None or locator[0] != "repo-owner":
        return locator
    owner = locator[1]
    for target, _ in members:
        for url in target.urls:
            repo = github_repository(url)
            if repo and repo[0] == owner:
                return ("repo", f"{repo[0]}/{repo[1]}")
    return None


def _chunk(
    members: list[Pair], out_of_reach: frozenset[str] = frozenset(), refused: list[Unreachable] | None = None
) -> list[tuple[list[Pair], tuple[str, ...] | None]]:
    """Repositories in chunks of at most 500, each target's repositories kept together. A target with no
    repository we can name (an opted-in Secret nobody references) needs the whole installation. Repositories
    ``out_of_reach`` are left out; a target that names only those is left out too (both told in ``refused``)."""
    chunks: list[tuple[list[Pair], set[str]]] = []
    whole: list[Pair] = []
    for pair in members:
        found = [r for r in map(github_repository, pair[0].urls) if r]
        repos = {name for _, name in found}
        if repos & out_of_reach:
            lost = tuple(sorted({f"{owner}/{name}" for owner, name in found if name in out_of_reach}))
            repos -= out_of_reach
            if refused is not None:
                refused.append(Unreachable(pair[0], lost, served=bool(repos)))
            if not repos:
                continue
        if not repos:
            whole.append(pair)
            continue
        for chunk_members, chunk_repos in chunks:
            if len(chunk_repos) + len(repos - chunk_repos) <= MAX_REPOSITORIES:
                chunk_members.append(pair)
                chunk_repos |= repos
                break
        else:
            chunks.append(([pair], set(repos)))
    result: list[tuple[list[Pair], tuple[str, ...] | None]] = [
        (chunk_members, tuple(sorted(repos))) for chunk_members, repos in chunks
    ]
    if whole:
        result.append((whole, None))
    return result
