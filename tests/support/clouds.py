"""The local stand-ins for the clouds, wired together: GitHub API, Google token endpoint, Entra ID + IMDS, and a
Git smart-HTTP server that accepts exactly the live tokens they issued. Shared by the e2e tests, the
refresher benchmark and ``make run``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from common import names
from tests.fakes.entra import FakeEntra, running_entra
from tests.fakes.github import FakeGitHub, new_app_key, running_github
from tests.fakes.google import FakeGoogle, running_google
from tests.support.gitserver import GitServer, make_repository, running_git_server
from tests.support.tls import TLSFiles

GITHUB_APP_ID = 4242
GITHUB_INSTALLATION = 9001
GITHUB_ACCOUNT = "acme"
GITHUB_REPOSITORIES = {"app", "infra", "docs"}


@dataclass
class Clouds:
    tls: TLSFiles
    github: FakeGitHub
    github_private_key: bytes
    google: FakeGoogle
    entra: FakeEntra
    git: GitServer

    def repo_url(self, path: str) -> str:
        return f"{self.git.url}/{path}.git"

    def authorize(self, username: str, password: str, repo: str) -> bool:
        if username == names.GITHUB_USERNAME:
            return self.github.live(password, repo)
        if username.endswith(".iam.gserviceaccount.com") or username == names.GCP_FEDERATED_USERNAME:
            return repo.startswith("gcp/") and self.google.live(password)
        if username == names.AZURE_DEFAULT_USERNAME:
            return repo.startswith("azure/") and self.entra.live(password)
        return False

    def github_secret_data(self, private_key: bytes | None = None, **extra: bytes) -> dict[str, bytes]:
        """A credentials Secret for the fake App (GitHub Enterprise style: base URL and the private CA)."""
        data = {
            "githubAppID": str(GITHUB_APP_ID).encode(),
            "githubAppInstallationID": str(GITHUB_INSTALLATION).encode(),
            "githubAppPrivateKey": private_key or self.github_private_key,
            "githubAppBaseURL": self.github.url.encode(),
            "ca.crt": self.tls.ca_pem,
        }
        data.update(extra)
        return data

    def refresher_args(self) -> list[str]:
        """Flags pointing the refresher's SDKs at these fakes through their documented overrides."""
        return [
            f"--github-api-urls={self.github.url}",
            f"--gcp-token-urls={self.google.url}/token",
            f"--gcp-sts-url={self.google.url}/v1/token",
            f"--gcp-iam-credentials-url={self.google.url}",
            f"--azure-authority-host={self.entra.url}",
            f"--azure-ca-file={self.tls.ca_file}",
        ]


@contextlib.asynccontextmanager
async def running_clouds(
    root: Path, service_account_public_key: bytes, host: str = "127.0.0.1"
) -> AsyncIterator[Clouds]:
    """The stand-ins on ``host``: loopback, or the host's end of a test node's veth (pods reach them there)."""
    tls = TLSFiles.create(root / "tls", host)
    private, public = new_app_key()
    github = FakeGitHub()
    github.add_app(GITHUB_APP_ID, public)
    github.add_installation(GITHUB_INSTALLATION, GITHUB_APP_ID, GITHUB_ACCOUNT, set(GITHUB_REPOSITORIES))
    repos = root / "repos"
    for name in sorted(GITHUB_REPOSITORIES):
        make_repository(repos, GITHUB_ACCOUNT, name, {"README.md": f"# {name}\n", "deploy/app.yaml": "kind: List\n"})
    make_repository(repos, "gcp", "infra")
    make_repository(repos, "azure", "fleet")
    entra = FakeEntra(service_account_public_key)
    holder: list[Clouds] = []

    def authorize(username: str, password: str, repo: str) -> bool:
        return holder[0].authorize(username, password, repo)

    async with (
        running_github(github, tls),
        running_google(FakeGoogle(), host) as google,
        running_entra(entra, tls),
        running_git_server(repos, authorize, tls) as git,
    ):
        clouds = Clouds(tls, github, private, google, entra, git)
        holder.append(clouds)
        yield clouds
