"""The GitHub provider against the local GitHub fake (real JWT verification, real status codes)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from refresher.credentials import github_api_base, github_credential
from refresher.errors import PermanentError, TemporaryError
from refresher.plan import MintKey, MintRequest
from refresher.providers.github import GitHubProvider, load_app_key
from tests.fakes.github import FakeGitHub, new_app_key, running_github
from tests.support.controlplane import free_port
from tests.support.tls import TLSFiles

APP_ID = 12345
GitHub = tuple[FakeGitHub, bytes, TLSFiles]
INSTALLATION = 777


@pytest.fixture
async def github(tmp_path: Path) -> AsyncIterator[tuple[FakeGitHub, bytes, TLSFiles]]:
    private, public = new_app_key()
    fake = FakeGitHub(token_lifetime_s=3600)
    fake.add_app(APP_ID, public)
    fake.add_installation(INSTALLATION, APP_ID, "acme", {"app", "infra", "docs"})
    tls = TLSFiles.create(tmp_path / "tls")
    async with running_github(fake, tls):
        yield fake, private, tls


@pytest.fixture
async def provider(github: GitHub) -> AsyncIterator[GitHubProvider]:
    async with aiohttp.ClientSession() as session:
        yield GitHubProvider(session, api_urls=(github_api_base(github[0].url),))


def secret_data(fake: FakeGitHub, private: bytes, tls: TLSFiles, **extra: bytes) -> dict[str, bytes]:
    data = {
        "githubAppID": str(APP_ID).encode(),
        "githubAppPrivateKey": private,
        "githubAppBaseURL": fake.url.encode(),
        "ca.crt": tls.ca_pem,
    }
    data.update(extra)
    return data


def request(data: dict[str, bytes], installation: tuple[str, str] | None, repos: tuple[str, ...] | None) -> MintRequest:
    credential = github_credential(data, "github-app")
    key = MintKey("github", "apps", credential.fingerprint, repos or ())
    return MintRequest(
        key, credential, installation=installation, repositories=repos, permissions=(("contents", "read"),)
    )


async def test_mints_a_scoped_token_for_an_installation_id(github: GitHub, provider: GitHubProvider) -> None:
    fake, private, tls = github
    data = secret_data(fake, private, tls, githubAppInstallationID=str(INSTALLATION).encode())
    token = await provider.mint(request(data, ("id", str(INSTALLATION)), ("app",)))
    assert token.username == "x-access-token"
    assert token.value.startswith("ghs_")
    assert 3500 < token.expires_at - time.time() <= 3600
    assert fake.live(token.value, "acme/app")
    assert not fake.live(token.value, "acme/infra"), "scoped to the repositories asked for"
    assert fake.token_requests[-1] == {
        "installation": INSTALLATION,
        "repositories": ["app"],
        "permissions": {"contents": "read"},
    }


@pytest.mark.parametrize("locator", [("owner", "acme"), ("repo", "acme/infra")])
async def test_finds_the_installation_by_owner_or_repository(
    github: GitHub, provider: GitHubProvider, locator: tuple[str, str]
) -> None:
    fake, private, tls = github
    token = await provider.mint(request(secret_data(fake, private, tls), locator, None))
    assert fake.live(token.value, "acme/docs"), "installation-wide token"


async def test_wrong_private_key_is_permanent_and_names_the_keys(github: GitHub, provider: GitHubProvider) -> None:
    fake, _, tls = github
    other_private, _ = new_app_key()
    with pytest.raises(PermanentError) as err:
        await provider.mint(request(secret_data(fake, other_private, tls), ("id", str(INSTALLATION)), ("app",)))
    assert err.value.reason == "Unauthorized"
    assert "githubAppID 12345 and githubAppPrivateKey" in str(err.value)
    assert b"PRIVATE KEY" not in str(err.value).encode()


async def test_repository_outside_the_installation_is_a_permanent_422(github: GitHub, provider: GitHubProvider) -> None:
    fake, private, tls = github
    with pytest.raises(PermanentError) as err:
        await provider.mint(request(secret_data(fake, private, tls), ("id", str(INSTALLATION)), ("secret-repo",)))
    assert err.value.reason == "ScopeRefused"
    assert "secret-repo" in str(err.value)


async def test_unknown_installation_is_permanent(github: GitHub, provider: GitHubProvider) -> None:
    fake, private, tls = github
    with pytest.raises(PermanentError) as err:
        await provider.mint(request(secret_data(fake, private, tls), ("id", "999"), None))
    assert "githubAppInstallationID" in str(err.value)
    with pytest.raises(PermanentError) as err:
        await provider.mint(request(secret_data(fake, private, tls), ("owner", "nobody"), None))
    assert err.value.reason == "InstallationNotFound"


async def test_429_is_temporary_with_retry_after(github: GitHub, provider: GitHubProvider) -> None:
    fake, private, tls = github
    fake.fail_next(429, headers={"Retry-After": "7"})
    with pytest.raises(TemporaryError) as err:
        await provider.mint(request(secret_data(fake, private, tls), ("id", str(INSTALLATION)), ("app",)))
    assert (err.value.reason, err.value.retry_after) == ("RateLimited", 7.0)


async def test_rate_limited_403_waits_for_the_reset(github: GitHub, provider: GitHubProvider) -> None:
    fake, private, tls = github
    reset = int(time.time()) + 42
    fake.fail_next(403, headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)})
    with pytest.raises(TemporaryError) as err:
        await provider.mint(request(secret_data(fake, private, tls), ("id", str(INSTALLATION)), ("app",)))
    assert err.value.retry_after is not None
    assert 38 <= err.value.retry_after <= 42


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_temporary(github: GitHub, provider: GitHubProvider, status: int) -> None:
    fake, private, tls = github
    fake.fail_next(status)
    with pytest.raises(TemporaryError):
        await provider.mint(request(secret_data(fake, private, tls), ("id", str(INSTALLATION)), ("app",)))
    token = await provider.mint(request(secret_data(fake, private, tls), ("id", str(INSTALLATION)), ("app",)))
    assert fake.live(token.value)


async def test_unreachable_api_is_temporary() -> None:
    private, _ = new_app_key()
    data = {"githubAppID": b"1", "githubAppPrivateKey": private, "githubAppBaseURL": b"https://127.0.0.1:9"}
    async with aiohttp.ClientSession() as session:
        provider = GitHubProvider(session, api_urls=("https://127.0.0.1:9/api/v3",))
        with pytest.raises(TemporaryError) as err:
            await provider.mint(request(data, ("id", "1"), None))
    assert err.value.reason == "Unreachable"


@pytest.fixture
async def internal_service(tmp_path: Path) -> AsyncIterator[tuple[str, list[str], TLSFiles]]:
    """An in-cluster HTTPS service a tenant should not reach through us (its CA is in every namespace's
    kube-root-ca.crt): it answers anything with a 422 whose message gives it away."""
    seen: list[str] = []

    async def anything(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path}")
        return web.json_response({"message": "internal-service-secret-banner v1.2.3"}, status=422)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    tls = TLSFiles.create(tmp_path / "internal-tls")
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls.server_context()).start()
    try:
        yield f"https://127.0.0.1:{port}", seen, tls
    finally:
        await runner.cleanup()


async def test_a_tenant_secret_cannot_aim_the_refresher_at_another_https_service(
    github: GitHub, internal_service: tuple[str, list[str], TLSFiles]
) -> None:
    """Regression (#23): any https:// githubAppBaseURL was called, with the App's JWT, and the answer came back in
    the tenant's Event. Only the --github-api-urls bases are called now; anything else is refused unsent."""
    url, seen, internal_tls = internal_service
    fake, private, _ = github
    data = {
        "githubAppID": str(APP_ID).encode(),
        "githubAppPrivateKey": private,
        "githubAppBaseURL": url.encode(),
        "ca.crt": internal_tls.ca_pem,
    }
    async with aiohttp.ClientSession() as session:
        allowed_github_only = GitHubProvider(session, api_urls=(github_api_base(fake.url),))
        with pytest.raises(PermanentError) as err:
            await allowed_github_only.mint(request(data, ("id", str(INSTALLATION)), ("app",)))
        assert err.value.reason == "ApiNotAllowed"
        assert "--github-api-urls" in str(err.value)
        assert seen == []
        # The same Secret where the admin allowed that host: the call is made, and the remote text is told.
        allowed = GitHubProvider(session, api_urls=(github_api_base(url),))
        with pytest.raises(PermanentError) as told:
            await allowed.mint(request(data, ("id", str(INSTALLATION)), ("app",)))
    assert seen == [f"POST /api/v3/app/installations/{INSTALLATION}/access_tokens"]
    assert "internal-service-secret-banner" in str(told.value)
    assert "internal-service-secret-banner" not in str(err.value)


def test_the_api_allowlist_is_normalised_and_checked() -> None:
    from refresher.config import from_args

    assert from_args([]).github_api_urls == ("https://api.github.com",)
    config = from_args(["--github-api-urls=https://api.github.com,https://ghe.example.com/"])
    assert config.github_api_urls == ("https://api.github.com", "https://ghe.example.com/api/v3")
    with pytest.raises(SystemExit):
        from_args(["--github-api-urls=http://ghe.example.com"])


async def test_garbled_private_key_is_permanent_and_not_quoted(provider: GitHubProvider) -> None:
    garbled = (
        b"-----BEGIN RSA PRIVATE KEY-----\nTUlJQ2RnSUJBREFOQmdrcWhraUc5dzBCQVFFRkFBU0NBbUF3\n"
        b"-----END RSA PRIVATE KEY-----\n"
    )
    data = {"githubAppID": b"1", "githubAppPrivateKey": garbled}
    with pytest.raises(PermanentError) as err:
        await provider.mint(request(data, ("id", "1"), None))
    assert err.value.reason == "InvalidKey"
    assert "TUlJQ2" not in str(err.value)


def test_enterprise_base_url_is_normalised() -> None:
    from refresher.credentials import github_api_base

    assert github_api_base(None) == "https://api.github.com"
    assert github_api_base("https://github.com/") == "https://api.github.com"
    assert github_api_base("https://ghe.example.com") == "https://ghe.example.com/api/v3"
    assert github_api_base("https://ghe.example.com/api/v3/") == "https://ghe.example.com/api/v3"


async def test_credentials_sharing_a_ca_share_pooled_connections(github: GitHub) -> None:
    """Each idle TLS connection holds ~256 KiB: 100 credentials must not mean 100 connections."""
    fake, private, tls = github
    other_private, other_public = new_app_key()
    fake.add_app(APP_ID + 1, other_public)
    fake.add_installation(INSTALLATION + 1, APP_ID + 1, "acme", {"app"})
    async with aiohttp.ClientSession() as session:
        provider = GitHubProvider(session, api_urls=(github_api_base(fake.url),))
        await provider.mint(request(secret_data(fake, private, tls), ("id", str(INSTALLATION)), ("app",)))
        other = secret_data(fake, other_private, tls, githubAppID=str(APP_ID + 1).encode())
        await provider.mint(request(other, ("id", str(INSTALLATION + 1)), ("app",)))
        assert session.connector is not None
        pools = session.connector._conns
        assert sum(len(v) for v in pools.values()) == 1


def inconsistent_key() -> bytes:
    """A well-formed PEM whose private exponent does not fit its public one: it loads without OpenSSL's full check,
    and every signature it makes is wrong (OpenSSL's own CRT fault check cannot catch a wrong d)."""
    good = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    n = good.private_numbers()
    d = n.d + 2
    broken = rsa.RSAPrivateNumbers(n.p, n.q, d, d % (n.p - 1), d % (n.q - 1), n.iqmp, n.public_numbers).private_key(
        unsafe_skip_rsa_key_validation=True
    )
    return broken.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


async def test_an_inconsistent_private_key_is_refused_before_anything_is_signed_for_github(
    github: GitHub, provider: GitHubProvider
) -> None:
    fake, _, tls = github
    data = secret_data(fake, inconsistent_key(), tls)
    with pytest.raises(PermanentError) as err:
        await provider.mint(request(data, ("id", str(INSTALLATION)), None))
    assert err.value.reason == "InvalidKey"
    assert fake.issued == {}


def test_a_small_rsa_key_is_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    with pytest.raises(ValueError, match="2048 to 8192"):
        load_app_key(small)


async def test_the_installations_reach_is_listed_page_by_page(github: GitHub, provider: GitHubProvider) -> None:
    """What #24's isolation asks after a 422: every repository the installation reaches, 100 a page, with an
    installation token that can read metadata only."""
    fake, private, tls = github
    fake.add_repositories(INSTALLATION, {f"repo-{i}" for i in range(230)})
    data = secret_data(fake, private, tls)
    reachable = await provider.reachable(request(data, ("id", str(INSTALLATION)), ("app", "gone")))
    assert reachable == frozenset({"app", "infra", "docs", *(f"repo-{i}" for i in range(230))})
    assert fake.repository_lists == 3
    assert fake.token_requests[-1] == {"installation": INSTALLATION, "permissions": {"metadata": "read"}}
