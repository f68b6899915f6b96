"""The refresher on the real control plane, against the protocol fakes, read by a real git client."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from kubernetes_asyncio import client

from common import httpserver, names
from common.connections import STATUS_LIMITS
from tests.e2e.conftest import RefresherFactory
from tests.support.clouds import GITHUB_INSTALLATION, Clouds
from tests.support.controlplane import free_port
from tests.support.gitrepos import (
    create_gitrepository,
    create_secret,
    decoded,
    events_for,
    filled,
    ls_remote,
    read_secret,
)
from tests.support.gitserver import git_clone
from tests.support.kube import K8S_VERSIONS, Kube, eventually

# Every Kubernetes version of the matrix: the oldest and newest the module proxy serves, and the default (#19)
pytestmark = K8S_VERSIONS

# --- the three providers, end to end --------------------------------------------------------------


async def test_github_secret_fills_within_a_second_and_git_clones_with_it(
    kube: Kube, clouds: Clouds, namespace: str, refresher: RefresherFactory, tmp_path: Path
) -> None:
    await create_secret(kube, namespace, "github-app", clouds.github_secret_data())
    credentials_before = (await read_secret(kube, namespace, "github-app")).to_dict()  # type: ignore[union-attr]
    async with refresher():
        repo = await create_gitrepository(kube, namespace, "app", "github", clouds.repo_url("acme/app"), "github-app")
        started = time.monotonic()
        secret = await filled(kube, namespace, "app-git-token")
        elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"took {elapsed:.2f}s"
    assert secret.type == "kubernetes.io/basic-auth"
    assert decoded(secret, "username") == "x-access-token"
    assert secret.metadata.labels == {"app.kubernetes.io/managed-by": "flux-passwordless"}
    owner = secret.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid, owner.controller) == (
        "GitRepository",
        "app",
        repo["metadata"]["uid"],
        True,
    )
    assert set(secret.metadata.annotations) >= {names.ANNOTATION_EXPIRES_AT, names.ANNOTATION_REFRESHED_AT}
    assert base64.b64decode(secret.data["ca.crt"]) == clouds.tls.ca_pem, "the private CA is copied for git"
    # scoped: the token reads acme/app and nothing else
    assert (await ls_remote(clouds, "acme/app", secret)).returncode == 0
    assert (await ls_remote(clouds, "acme/infra", secret)).returncode != 0
    cloned = await asyncio.to_thread(
        git_clone,
        clouds.repo_url("acme/app"),
        "x-access-token",
        decoded(secret, "password"),
        clouds.tls.ca_file,
        tmp_path / "app",
    )
    assert cloned.returncode == 0, cloned.stderr
    assert (tmp_path / "app" / "deploy" / "app.yaml").exists()
    after = (await read_secret(kube, namespace, "github-app")).to_dict()  # type: ignore[union-attr]
    assert after["data"] == credentials_before["data"], "the credentials Secret is never written"
    assert after["metadata"]["resource_version"] == credentials_before["metadata"]["resource_version"]
    reasons = {e.reason for e in await events_for(kube, namespace, "app")}
    assert "TokenMinted" in reasons


async def test_gcp_service_account_key(kube: Kube, clouds: Clouds, namespace: str, refresher: RefresherFactory) -> None:
    key = clouds.google.service_account_key("flux@demo-project.iam.gserviceaccount.com")
    import json

    await create_secret(kube, namespace, "gcp-sa", {"gcpServiceAccount": json.dumps(key).encode()})
    async with refresher():
        await create_gitrepository(kube, namespace, "infra", "gcp", clouds.repo_url("gcp/infra"), "gcp-sa")
        started = time.monotonic()
        secret = await filled(kube, namespace, "infra-git-token")
        assert time.monotonic() - started < 1.0
    assert decoded(secret, "username") == "flux@demo-project.iam.gserviceaccount.com"
    assert (await ls_remote(clouds, "gcp/infra", secret)).returncode == 0


async def test_azure_per_object_identity_uses_a_real_token_request(
    kube: Kube, clouds: Clouds, namespace: str, refresher: RefresherFactory
) -> None:
    core = client.CoreV1Api(kube.api)
    annotations = {names.AZURE_ANNOTATION_CLIENT_ID: "client-7", names.AZURE_ANNOTATION_TENANT_ID: "tenant-7"}
    await core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="git-reader", annotations=annotations))
    )
    clouds.entra.federate("tenant-7", "client-7", namespace, "git-reader")
    async with refresher():
        await create_gitrepository(
            kube, namespace, "fleet", "azure", clouds.repo_url("azure/fleet"), serviceAccountName="git-reader"
        )
        started = time.monotonic()
        secret = await filled(kube, namespace, "fleet-git-token")
        assert time.monotonic() - started < 1.0
    assert decoded(secret, "username") == "azure-devops"
    assert (await ls_remote(clouds, "azure/fleet", secret)).returncode == 0


async def test_azure_own_identity_is_refused_outside_identity_namespaces(
    kube: Kube, clouds: Clouds, namespace: str, refresher: RefresherFactory
) -> None:
    async with refresher("--identity-namespaces=flux-system"):
        await create_gitrepository(kube, namespace, "fleet", "azure", clouds.repo_url("azure/fleet"))

        async def refused() -> list[client.CoreV1Event] | None:
            found = [e for e in await events_for(kube, namespace, "fleet") if e.reason == "IdentityRefused"]
            return found or None

        events = await eventually(refused, timeout=10, what="IdentityRefused event")
    assert events[0].type == "Warning"
    assert f'namespace "{namespace}" may not use the refresher\'s own identity' in events[0].message
    assert await read_secret(kube, namespace, "fleet-git-token") is None


# --- renewal, rotation, failures --------------------------------------------------------------------


@contextlib.asynccontextmanager
async def short_lived_app(
    kube: Kube, clouds: Clouds, namespace: str, refresher: RefresherFactory, lifetime_s: float
) -> AsyncIterator[client.V1Secret]:
    """A refresher serving GitRepository "app" (interval and timeout 1s) with tokens living ``lifetime_s``;
    yields the Secret holding the first token."""
    await create_secret(kube, namespace, "github-app", clouds.github_secret_data())
    clouds.github.token_lifetime_s = lifetime_s
    try:
        async with refresher():
            await create_gitrepository(
                kube, namespace, "app", "github", clouds.repo_url("acme/app"), "github-app", interval="1s", timeout="1s"
            )
            yield await filled(kube, namespace, "app-git-token")
    finally:
        clouds.github.token_lifetime_s = 3600


async def test_renews_before_expiry_and_expired_tokens_stop_working(
    kube: Kube, clouds: Clouds, namespace: str, refresher: RefresherFactory
) -> None:
    async with short_lived_app(kube, clouds, namespace, refresher, lifetime_s=6) as first:
        first_password = decoded(first, "password")
        first_expiry = clouds.github.issued[first_password].expires_at
        second = await filled(kube, namespace, "app-git-token", timeout=10, not_password=first_password)
        renewed_at = time.time()
    assert renewed_at < first_expiry, "renewed before the old token expired"
    assert (await ls_remote(clouds, "acme/app", second)).returncode == 0
    await asyncio.sleep(max(first_expiry - time.time(), 0) + 0.2)
    assert (await ls_remote(clouds, "acme/app", first)).returncode != 0, "an expired token is refused"


async def test_key_rotation_re_mints_at_once(
    kube: Kube, clouds: Clouds, namespace: str, refresher: RefresherFactory
) -> None:
    from tests.fakes.github import new_app_key

    await create_secret(kube, namespace, "github-app", clouds.github_secret_data())
    async with refresher():
        await create_gitrepository(kube, namespace, "app", "github", clouds.repo_url("acme/app"), "github-app")
        first = await filled(kube, namespace, "app-git-token")
        new_private, new_public = new_app_key()
        clouds.github.add_app(4242, new_public)  # the App's key is rotated on GitHub ...
        try:
            patch = {"data": {"githubAppPrivateKey": base64.b64encode(new_private).decode()}}
            await client.CoreV1Api(kube.api).patch_namespaced_secret("github-app", namespace, patch)  # ... and here
            rotated = await filled(kube, namespace, "app-git-token", timeout=5, not_password=decoded(first, "password"))
        finally:
            clouds.github.add_app(4242, _public_of(clouds.github_private_key))
    assert (await ls_remote(clouds, "acme/app", rotated)).returncode == 0


def _public_of(private_pem: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(private_pem, password=None)
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


async def test_rate_limit_keeps_the_old_token_and_retries_after_retry_after(
    kube: Kube, clouds: Clouds, namespace: str, refresher: RefresherFactory
) -> None:
    async with short_lived_app(kube, clouds, namespace, refresher, lifetime_s=8) as first:
        first_password = decoded(first, "password")
        clouds.github.fail_next(429, headers={"Retry-After": "2"})
        mints_before = clouds.github.mints

        async def warned() -> bool:
            return any(e.reason == "TokenMintFailed" for e in await events_for(kube, namespace, "app"))

        await eventually(warned, timeout=10, what="TokenMintFailed event")
        failed_at = time.monotonic()
        kept = await read_secret(kube, namespace, "app-git-token")
        assert kept is not None
        assert decoded(kept, "password") == first_password, "the old token stays while it is valid"
        second = await filled(kube, namespace, "app-git-token", timeout=10, not_password=first_password)
        retried_after = time.monotonic() - failed_at
    assert retried_after >= 1.5, f"retried {retried_after:.1f}s after the 429, Retry-After was 2s"
    assert clouds.github.mints == mints_before + 1, "one failed attempt (not counted), then one success"
    event = next(e for e in await events_for(kube, namespace, "app") if e.reason == "TokenMintFailed")
    assert event.type == "Warning"
    assert "RateLimited" in event.message or "rate limit" in event.message
    assert (await ls_remote(clouds, "acme/app", second)).returncode == 0


# --- ownership rules ----------------------------------------------------------------------------


async def test_opted_in_secret_keeps_foreign_keys(
    kube: Kube, clouds: Clouds, namespace: str, refresher: RefresherFactory
) -> None:
    await create_secret(kube, namespace, "github-app", clouds.github_secret_data())
    await create_secret(
        kube,
        namespace,
        "argocd-repo",
        {
            "username": b"old-pat-user",
            "password": b"ghp_long_lived_pat",
            "url": b"https://github.com/acme/app",
            "type": b"git",
        },
        labels={names.LABEL_PROVIDER: "github", "argocd.argoproj.io/secret-type": "repository"},
        annotations={
            names.ANNOTATION_CREDENTIALS_SECRET: "github-app",
            names.ANNOTATION_REPOSITORIES: "https://github.com/acme/app",
        },
    )
    async with refresher():
        secret = await filled(kube, namespace, "argocd-repo", not_password="ghp_long_lived_pat")
    assert decoded(secret, "username") == "x-access-token"
    assert decoded(secret, "url") == "https://github.com/acme/app"
    assert decoded(secret, "type") == "git"
    assert secret.metadata.labels["argocd.argoproj.io/secret-type"] == "repository"
    assert (await ls_remote(clouds, "acme/app", secret)).returncode == 0
    managers = {m.manager for m in secret.metadata.managed_fields}
    assert "flux-passwordless" in managers


async def test_foreign_secret_with_the_output_name_is_never_overwritten(
    kube: Kube, clouds: Clouds, namespace: str, refresher: RefresherFactory
) -> None:
    await create_secret(kube, namespace, "github-app", clouds.github_secret_data())
    await create_secret(kube, namespace, "app-git-token", {"password": b"someone-elses"})
    async with refresher():
        await create_gitrepository(kube, namespace, "app", "github", clouds.repo_url("acme/app"), "github-app")

        async def conflict() -> bool:
            return any(e.reason == "SecretConflict" for e in await events_for(kube, namespace, "app"))

        await eventually(conflict, timeout=10, what="SecretConflict event")
    secret = await read_secret(kube, namespace, "app-git-token")
    assert secret is not None
    assert secret.data == {"password": base64.b64encode(b"someone-elses").decode()}


async def test_invalid_object_that_slipped_past_the_webhook_gets_the_webhook_message(
    kube: Kube, clouds: Clouds, namespace: str, refresher: RefresherFactory
) -> None:
    async with refresher():
        await create_gitrepository(kube, namespace, "app", "github", clouds.repo_url("acme/app"))  # no credentials

        async def invalid() -> list[client.CoreV1Event] | None:
            return [e for e in await events_for(kube, namespace, "app") if e.reason == "InvalidSpec"] or None

        events = await eventually(invalid, timeout=10, what="InvalidSpec event")
    assert events[0].message == (
        'metadata.annotations[flux-passwordless.io/credentials-secret]: Required value: provider "github" needs a '
        "secretRef naming a Secret with githubAppID, githubAppInstallationID (optional) and githubAppPrivateKey"
    )


# --- resilience ---------------------------------------------------------------------------------


async def test_two_refreshers_one_leads_and_the_other_takes_over(
    kube: Kube, clouds: Clouds, namespace: str, refresher: RefresherFactory
) -> None:
    await create_secret(kube, namespace, "github-app", clouds.github_secret_data())
    lease = f"--lease-name=refresher-{namespace}"
    async with contextlib.AsyncExitStack() as stack_b, contextlib.AsyncExitStack() as stack_a:
        a = await stack_a.enter_async_context(refresher("--leader-elect", lease, "--identity=replica-a"))
        b = await stack_b.enter_async_context(refresher("--leader-elect", lease, "--identity=replica-b"))
        assert a.elector is not None
        assert b.elector is not None
        electors = (a.elector, b.elector)

        async def one_leader() -> bool:
            return any(e.leading for e in electors)

        await eventually(one_leader, timeout=10, what="a leader")
        await asyncio.sleep(2.5)  # a full retry period: the other replica has tried and lost
        assert [e.leading for e in electors].count(True) == 1
        await create_gitrepository(kube, namespace, "one", "github", clouds.repo_url("acme/app"), "github-app")
        await filled(kube, namespace, "one-git-token")
        leader_stack, new = (stack_a, b) if a.elector.leading else (stack_b, a)
        standby = new.elector
        assert standby is not None
        issued = len(clouds.github.issued)
        stopped = time.monotonic()
        await leader_stack.aclose()  # the leader stops (as on SIGTERM) and releases the lease

        async def standby_leads() -> bool:
            return standby.leading

        await eventually(standby_leads, timeout=10, what="the standby to lead")
        takeover = time.monotonic() - stopped

        async def new_leader_synced() -> bool:
            return new.controller is not None and new.controller.synced

        await eventually(new_leader_synced, timeout=10, what="the new leader's caches")
        await asyncio.sleep(1.0)  # its first passes
        assert len(clouds.github.issued) == issued, "the new leader adopts the live token instead of minting"
        await create_gitrepository(kube, namespace, "two", "github", clouds.repo_url("acme/infra"), "github-app")
        await filled(kube, namespace, "two-git-token")
    assert takeover < 5, f"took over after {takeover:.1f}s: the lease was released, not waited out"


async def test_recovers_when_the_apiserver_restarts(
    kube: Kube, clouds: Clouds, namespace: str, refresher: RefresherFactory
) -> None:
    await create_secret(kube, namespace, "github-app", clouds.github_secret_data())
    async with refresher():
        await create_gitrepository(kube, namespace, "before", "github", clouds.repo_url("acme/app"), "github-app")
        await filled(kube, namespace, "before-git-token")
        await asyncio.to_thread(kube.plane.restart_apiserver)
        await create_gitrepository(kube, namespace, "after", "github", clouds.repo_url("acme/docs"), "github-app")
        secret = await filled(kube, namespace, "after-git-token", timeout=30)
    assert (await ls_remote(clouds, "acme/docs", secret)).returncode == 0


async def test_no_token_in_logs_or_events(
    kube: Kube, clouds: Clouds, namespace: str, refresher: RefresherFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await create_secret(kube, namespace, "github-app", clouds.github_secret_data())
    async with refresher() as instance:
        port = free_port()
        status = await httpserver.start(instance.status_routes(), "127.0.0.1", port, STATUS_LIMITS)
        await create_gitrepository(kube, namespace, "app", "github", clouds.repo_url("acme/app"), "github-app")
        secret = await filled(kube, namespace, "app-git-token")
        clouds.github.fail_next(401)
        await create_gitrepository(kube, namespace, "docs", "github", clouds.repo_url("acme/docs"), "github-app")
        await asyncio.sleep(1.5)
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            for path in ("/healthz", "/readyz"):
                async with http.get(path) as resp:
                    assert resp.status == 200, path
            async with http.get("/metrics") as resp:
                metrics_text = await resp.text()
        await status.close()
    assert 'flux_passwordless_mints_total{provider="github",result="ok"}' in metrics_text
    assert 'flux_passwordless_mints_total{provider="github",result="Unauthorized"}' in metrics_text
    assert f'flux_passwordless_token_expiry_timestamp_seconds{{namespace="{namespace}",secret="app-git-token"}}' in (
        metrics_text
    )
    token = decoded(secret, "password")
    secrets_seen = [token, clouds.github_private_key.decode().splitlines()[1]]
    events = await client.CoreV1Api(kube.api).list_namespaced_event(namespace)
    assert events.items, "events were recorded"
    for text in [caplog.text, metrics_text, *(e.message for e in events.items)]:
        for value in secrets_seen:
            assert value not in text
    assert "token minted" in caplog.text


async def test_an_unreachable_repository_is_isolated_and_a_regrant_widens_the_token(
    kube: Kube, clouds: Clouds, namespace: str, refresher: RefresherFactory
) -> None:
    """#24 on the real apiserver, the GitHub stand-in answering 422 from its installation's repositories: a
    GitRepository naming a repository out of reach gets the Warning and no token; the one beside it keeps getting
    tokens; once the repository is granted to the installation, the re-check serves it too."""
    await create_secret(kube, namespace, "github-app", clouds.github_secret_data())
    async with refresher("--github-recheck-interval=2"):
        await create_gitrepository(kube, namespace, "app", "github", clouds.repo_url("acme/app"), "github-app")
        first = await filled(kube, namespace, "app-git-token")
        await create_gitrepository(kube, namespace, "late", "github", clouds.repo_url("acme/late"), "github-app")

        async def told() -> bool:
            return any(e.reason == "RepositoryUnreachable" for e in await events_for(kube, namespace, "late"))

        await eventually(told, timeout=15, what="RepositoryUnreachable on late")
        assert await read_secret(kube, namespace, "late-git-token") is None
        assert {e.reason for e in await events_for(kube, namespace, "app")} == {"TokenMinted"}
        assert clouds.github.live(decoded(first, "password"), "acme/app")
        clouds.github.add_repositories(GITHUB_INSTALLATION, {"late"})  # granted to the App
        try:
            late = await filled(kube, namespace, "late-git-token", timeout=15)
            assert clouds.github.live(decoded(late, "password"), "acme/late")
        finally:
            clouds.github.remove_repositories(GITHUB_INSTALLATION, {"late"})
