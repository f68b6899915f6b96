"""Which tokens to mint, and which Secrets each one fills. Pure.

A token is minted once per distinct (credential, scope): every target sharing a credential shares its token.
For GitHub the scope is the union of the repositories those targets serve (at most 500 per token, split
beyond) with their permissions; ``installation`` scoping turns that off.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from common import names
from refresher.credentials import AzureIdentity, Credential, GcpKey, GitHubApp
from refresher.targets import Target

MAX_REPOSITORIES = 500


def github_repository(url: str) -> tuple[str, str] | None:
    """(owner, repo) of ``https://host/owner/repo(.git)``, or of a bare ``owner/repo``."""
    path = urlsplit(url).path if "://" in url else url
    parts = [p for p in path.strip("/").split("/") if p]
    if len(parts) < 2:
        return None
    owner, repo = parts[-2], parts[-1].removesuffix(".git")
    return (owner, repo) if owner and repo else None


@dataclass(frozen=True)
class MintKey:
    """One token: the credential's fingerprint plus the provider-specific scope."""

    provider: str
    fingerprint: str
    scope: tuple[str, ...]


@dataclass(frozen=True)
class MintRequest:
    key: MintKey
    credential: Credential
    installation: tuple[str, str] | None = None  # github: ("id", "123") | ("owner", "org") | ("repo", "o/r")
    repositories: tuple[str, ...] | None = None  # github: repo names; None = the whole installation
    permissions: tuple[tuple[str, str], ...] = ()
    scopes: tuple[str, ...] = ()  # gcp / azure OAuth scopes


@dataclass(frozen=True)
class Plan:
    requests: dict[MintKey, MintRequest]
    assignment: dict[tuple[str, str, str], MintKey]  # target key -> the token it receives


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
    targets: Iterable[tuple[Target, Credential]],
    github_scope: str = "repositories",
    gcp_scopes: tuple[str, ...] = (names.GCP_DEFAULT_SCOPE,),
    azure_scope: str = names.AZURE_DEVOPS_SCOPE,
) -> Plan:
    requests: dict[MintKey, MintRequest] = {}
    assignment: dict[tuple[str, str, str], MintKey] = {}
    # github targets are grouped first: their scope depends on every target sharing the credential
    github_groups: dict[tuple[str, tuple[str, str] | None, tuple[tuple[str, str], ...]], list[tuple[Target, GitHubApp]]]
    github_groups = defaultdict(list)
    for target, credential in sorted(targets, key=lambda tc: tc[0].key):
        if isinstance(credential, GitHubApp):
            # An installation is per account: a repository URL locates it only for its own owner.
            urls = target.urls
            locator = _github_locator(credential, urls)
            if locator and locator[0] == "repo":
                locator = ("repo-owner", locator[1].split("/")[0])
            permissions = tuple(sorted(target.permissions.items()))
            github_groups[(credential.fingerprint, locator, permissions)].append((target, credential))
        elif isinstance(credential, GcpKey):
            key = MintKey(names.PROVIDER_GCP, credential.fingerprint, gcp_scopes)
            requests.setdefault(key, MintRequest(key, credential, scopes=gcp_scopes))
            assignment[target.key] = key
        elif isinstance(credential, AzureIdentity):
            key = MintKey(names.PROVIDER_AZURE, credential.fingerprint, (azure_scope,))
            requests.setdefault(key, MintRequest(key, credential, scopes=(azure_scope,)))
            assignment[target.key] = key
    for (fingerprint, locator, permissions), members in github_groups.items():
        credential = members[0][1]
        installation = _installation(locator, members)
        if github_scope == "installation":
            chunks: list[tuple[list[Target], tuple[str, ...] | None]] = [([t for t, _ in members], None)]
        else:
            chunks = _chunk([t for t, _ in members])
        for chunk_targets, repos in chunks:
            scope = ("installation",) if repos is None else repos
            scope_key = (
                *(f"{k}={v}" for k, v in permissions),
                f"installation={installation[0]}:{installation[1]}" if installation else "installation=?",
                *scope,
            )
            key = MintKey(names.PROVIDER_GITHUB, fingerprint, scope_key)
            requests[key] = MintRequest(
                key, credential, installation=installation, repositories=repos, permissions=permissions
            )
            for target in chunk_targets:
                assignment[target.key] = key
    return Plan(requests, assignment)


def _installation(locator: tuple[str, str] | None, members: list[tuple[Target, GitHubApp]]) -> tuple[str, str] | None:
    if locator is None or locator[0] != "repo-owner":
        return locator
    owner = locator[1]
    for target, _ in members:
        for url in target.urls:
            repo = github_repository(url)
            if repo and repo[0] == owner:
                return ("repo", f"{repo[0]}/{repo[1]}")
    return None


def _chunk(targets: list[Target]) -> list[tuple[list[Target], tuple[str, ...] | None]]:
    """Repositories in chunks of at most 500, each target's repositories kept together. A target with no
    repository we can name (an opted-in Secret nobody references) needs the whole installation."""
    chunks: list[tuple[list[Target], set[str]]] = []
    whole: list[Target] = []
    for target in targets:
        repos = {r[1] for r in map(github_repository, target.urls) if r}
        if not repos:
            whole.append(target)
            continue
        for chunk_targets, chunk_repos in chunks:
            if len(chunk_repos) + len(repos - chunk_repos) <= MAX_REPOSITORIES:
                chunk_targets.append(target)
                chunk_repos |= repos
                break
        else:
            chunks.append(([target], set(repos)))
    result: list[tuple[list[Target], tuple[str, ...] | None]] = [
        (chunk_targets, tuple(sorted(repos))) for chunk_targets, repos in chunks
    ]
    if whole:
        result.append((whole, None))
    return result
