"""Central credentials, granted by policy. Pure.

A platform admin keeps one credentials Secret (a GitHub App, a Google key) in a namespace tenants cannot read
(``--credentials-namespaces``, default the refresher's own) and grants its use with annotations on that Secret:

- ``flux-passwordless.io/grant-namespaces``: the tenant namespaces that may use it, names and globs
  (``team-*,payments``), comma-separated. Absent: none.
- ``flux-passwordless.io/grant-repositories``: for a GitHub App, the repositories (``owner/name`` globs) their
  tokens may reach. Absent: whatever the installation reaches.
- ``flux-passwordless.io/grant-permissions``: for a GitHub App, the most a token may carry (as the refresher's
  ``--github-permissions``, which still applies). Absent: ``contents:read``.

A tenant names it as ``namespace/name`` where it names a credentials Secret today. It never reads the key: it gets
scoped, short-lived tokens in its own namespace, one per (namespace, credential, scope) as for its own Secrets.
A refusal says which rule refused, never the grant's contents (other tenants' namespaces or repositories).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass

from common import names
from refresher.errors import PermanentError
from refresher.plan import github_repository
from refresher.targets import Target, parse_permissions, permissions_error


@dataclass(frozen=True)
class Grants:
    namespaces: tuple[str, ...]
    repositories: tuple[str, ...] | None  # lower-cased owner/name globs; None: any
    permissions: Mapping[str, str]


def grants_of(annotations: Mapping[str, str]) -> Grants:
    def globs(key: str) -> tuple[str, ...]:
        return tuple(g.strip().lower() for g in annotations.get(key, "").split(",") if g.strip())

    repositories = (
        globs(names.ANNOTATION_GRANT_REPOSITORIES) if names.ANNOTATION_GRANT_REPOSITORIES in annotations else None
    )
    return Grants(
        globs(names.ANNOTATION_GRANT_NAMESPACES),
        repositories,
        parse_permissions(annotations.get(names.ANNOTATION_GRANT_PERMISSIONS)),
    )


def not_granted(reference: str, namespace: str) -> PermanentError:
    """The one answer for a central credential that does not exist and for one that does not grant the tenant:
    a tenant cannot learn which Secrets the platform keeps by naming them."""
    return PermanentError(
        f'credentials "{reference}" are not granted to namespace "{namespace}" ({names.ANNOTATION_GRANT_NAMESPACES} '
        "on that Secret): ask the platform admin",
        "NamespaceNotGranted",
    )


def check(grants: Grants, reference: str, target: Target, provider: str) -> None:
    """Raise the ``PermanentError`` naming the rule ``target`` breaks, if any."""
    if not any(fnmatch.fnmatchcase(target.namespace, glob) for glob in grants.namespaces):
        raise not_granted(reference, target.namespace)
    if provider != names.PROVIDER_GITHUB:
        return
    if grants.repositories is not None:
        repositories = [f"{owner}/{name}" for owner, name in (r for r in map(github_repository, target.urls) if r)]
        if not repositories:
            raise PermanentError(
                f'credentials "{reference}" grant only some repositories, and this object names none '
                f"(set {names.ANNOTATION_REPOSITORIES})",
                "RepositoryNotGranted",
            )
        for repository in repositories:
            if not any(fnmatch.fnmatchcase(repository.lower(), glob) for glob in grants.repositories):
                raise PermanentError(
                    f'repository {repository} is outside what credentials "{reference}" grant '
                    f"({names.ANNOTATION_GRANT_REPOSITORIES} on that Secret): ask the platform admin",
                    "RepositoryNotGranted",
                )
    if (beyond := permissions_error(target.permissions, grants.permissions)) is not None:
        raise PermanentError(
            f'{beyond.path}: asks for {beyond.value}, beyond what credentials "{reference}" grant '
            f"({names.ANNOTATION_GRANT_PERMISSIONS} on that Secret)",
            "PermissionsNotGranted",
        )
