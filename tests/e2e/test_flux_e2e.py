"""Real Flux in the loop: the real source-controller (built from its Go module) reads the Secrets we fill, on the
real control plane, with our webhook in the apiserver's path and the refresher running, against a real smart-HTTP
Git server that accepts only live tokens of the stand-ins. Users' manifests are applied with kubectl, as users do.

Two source-controller versions: the newest that builds from the module proxy here, and the oldest we claim.
(v1.10.1, the newest served, does not build here: the proxy refuses seven of its dependency versions, among them
a pseudo-version and cosign; its CRD is still tested by the admission e2e.) Each test ends with the GitRepository
Ready=True on an artifact revision, which only a working token can give.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client
from prometheus_client import REGISTRY

from common import names
from refresher.app import token_requester
from refresher.events import COMPONENT
from tests.e2e.conftest import RefresherFactory
from tests.support.clouds import GITHUB_ACCOUNT, Clouds
from tests.support.fluxrepos import apply, get, manifest, ready
from tests.support.gitrepos import create_secret, filled, read_secret
from tests.support.gitserver import push_commit
from tests.support.kube import Kube, eventually, install_crds
from tests.support.registration import register
from tests.support.sourcecontroller import SourceController, running_source_controller
from tests.support.webhook import RunningWebhook, running_webhook

CONTROLLERS = ("v1.9.6", "v1.8.5")  # the newest buildable here, and the oldest we claim


@pytest.fixture(scope="module", params=CONTROLLERS, ids=[f"source-controller-{v}" for v in CONTROLLERS])
def source_controller(
    request: pytest.FixtureRequest, kube: Kube, clouds: Clouds, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SourceController]:
    workdir = tmp_path_factory.mktemp(f"source-controller-{request.param}")
    with running_source_controller(kube.plane, request.param, workdir, ca_file=clouds.tls.ca_file) as controller:
        yield controller
    install_crds(kube.plane)


@pytest.fixture(scope="module")
async def webhook(
    kube: Kube, source_controller: SourceController, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningWebhook]:
    name = f"flux-{source_controller.version.replace('.', '-')}"
    async with running_webhook(tmp_path_factory.mktemp("webhook"), kubeconfig=kube.kubeconfig) as hook:
        await register(kube, hook, name)
        yield hook
        await client.AdmissionregistrationV1Api(kube.api).delete_mutating_webhook_configuration(name)


@dataclass
class Flux:
    """Everything a test drives: the cluster, the stand-ins, its namespace, a refresher factory and Flux."""

    kube: Kube
    clouds: Clouds
    namespace: str
    refresher: RefresherFactory
    controller: SourceController

    async def github_app(self, name: str, **spec: Any) -> str:
        """The GitHub App's credentials Secret, and the user's manifest of GitRepository ``name`` using it."""
        await create_secret(self.kube, self.namespace, "github-app", self.clouds.github_secret_data())
        url = self.clouds.repo_url(f"{GITHUB_ACCOUNT}/{name}")
        return manifest(name, self.namespace, url=url, provider="github", secretRef={"name": "github-app"}, **spec)


@pytest.fixture
def flux_world(
    kube: Kube,
    clouds: Clouds,
    namespace: str,
    refresher: RefresherFactory,
    source_controller: SourceController,
    webhook: RunningWebhook,
) -> Flux:
    return Flux(kube, clouds, namespace, refresher, source_controller)


async def unchanged_by_reapply(kube: Kube, namespace: str, name: str, text: str) -> None:
    """kubectl diff of the user's manifest is empty; client- and server-side re-applies (the latter as
    kustomize-controller applies: its field manager, taking ownership) leave metadata.generation as it was."""
    generation = (await get(kube, namespace, name))["metadata"]["generation"]
    diff = await asyncio.to_thread(kube.kubectl, "diff", "-f", "-", stdin=text)
    assert (diff.returncode, diff.stdout) == (0, ""), diff.stdout + diff.stderr
    await apply(kube, text)
    await apply(kube, text, "--server-side", "--force-conflicts", "--field-manager=kustomize-controller")
    assert (await get(kube, namespace, name))["metadata"]["generation"] == generation


async def test_github(flux_world: Flux) -> None:
    kube, namespace, refresher = flux_world.kube, flux_world.namespace, flux_world.refresher
    source_controller = flux_world.controller
    text = await flux_world.github_app("app")
    async with refresher():
        await apply(kube, text)
        revision, seconds = await ready(kube, namespace, "app", source_controller)
        print(f"\n{source_controller.version} github: Ready on {revision} {seconds:.1f}s after kubectl apply")
        await unchanged_by_reapply(kube, namespace, "app", text)


async def test_gcp(flux_world: Flux) -> None:
    kube, clouds, namespace, refresher = flux_world.kube, flux_world.clouds, flux_world.namespace, flux_world.refresher
    source_controller = flux_world.controller
    key = clouds.google.service_account_key("flux@demo-project.iam.gserviceaccount.com")
    await create_secret(kube, namespace, "gcp-sa", {"gcpServiceAccount": json.dumps(key).encode()})
    text = manifest("infra", namespace, url=clouds.repo_url("gcp/infra"), provider="gcp", secretRef={"name": "gcp-sa"})
    async with refresher():
        await apply(kube, text)
        revision, seconds = await ready(kube, namespace, "infra", source_controller)
        print(f"\n{source_controller.version} gcp: Ready on {revision} {seconds:.1f}s after kubectl apply")
        await unchanged_by_reapply(kube, namespace, "infra", text)


POOL_PROVIDER = "projects/123456789/locations/global/workloadIdentityPools/clusters/providers/e2e"


@pytest.mark.parametrize("impersonate", [True, False], ids=["impersonating", "federated"])
async def test_gcp_keyless_per_object(flux_world: Flux, impersonate: bool) -> None:
    """#17: no key anywhere. The tenant's ServiceAccount names the Workload Identity Federation provider (and the
    Google service account to impersonate) with Flux's annotations; the refresher requests its token from the real
    apiserver (TokenRequest), the STS stand-in verifies it against the apiserver's issuer and signing key, and the
    real source-controller gets Ready on what Google returned."""
    kube, clouds, namespace, refresher = flux_world.kube, flux_world.clouds, flux_world.namespace, flux_world.refresher
    source_controller = flux_world.controller
    email = "infra-reader@demo-project.iam.gserviceaccount.com"
    annotations = {names.GCP_ANNOTATION_WORKLOAD_IDENTITY_PROVIDER: POOL_PROVIDER}
    if impersonate:
        annotations[names.GCP_ANNOTATION_SERVICE_ACCOUNT] = email
    await client.CoreV1Api(kube.api).create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="infra", annotations=annotations))
    )
    issuer = f"https://127.0.0.1:{kube.plane.api_port}"
    clouds.google.trust(POOL_PROVIDER, issuer, (kube.plane.state_dir / "pki" / "sa.pub").read_bytes())
    clouds.google.allow(email, POOL_PROVIDER, namespace, "infra")
    text = manifest("infra", namespace, url=clouds.repo_url("gcp/infra"), provider="gcp", serviceAccountName="infra")
    async with refresher():
        await apply(kube, text)
        revision, seconds = await ready(kube, namespace, "infra", source_controller)
        print(
            f"\n{source_controller.version} gcp keyless ({'impersonating' if impersonate else 'federated'}): "
            f"Ready on {revision} {seconds:.1f}s after apply"
        )
        await unchanged_by_reapply(kube, namespace, "infra", text)
    secret = await filled(kube, namespace, "infra-git-token")
    username = base64.b64decode(secret.data["username"]).decode()
    assert username == (email if impersonate else names.GCP_FEDERATED_USERNAME)
    subjects = [c["sub"] for c in clouds.google.exchanged]
    assert f"system:serviceaccount:{namespace}:infra" in subjects
    stored = (await get(kube, namespace, "infra"))["metadata"]["annotations"]
    assert stored[names.ANNOTATION_SERVICE_ACCOUNT] == "infra"
    assert names.ANNOTATION_CREDENTIALS_SECRET not in stored  # no key Secret named anywhere


async def test_azure_per_object(flux_world: Flux) -> None:
    kube, clouds, namespace, refresher = flux_world.kube, flux_world.clouds, flux_world.namespace, flux_world.refresher
    source_controller = flux_world.controller
    annotations = {names.AZURE_ANNOTATION_CLIENT_ID: "client-9", names.AZURE_ANNOTATION_TENANT_ID: "tenant-9"}
    await client.CoreV1Api(kube.api).create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="fleet", annotations=annotations))
    )
    clouds.entra.federate("tenant-9", "client-9", namespace, "fleet")
    text = manifest(
        "fleet", namespace, url=clouds.repo_url("azure/fleet"), provider="azure", serviceAccountName="fleet"
    )
    async with refresher():
        await apply(kube, text)  # Flux's CEL rule used to refuse what we stored
        revision, seconds = await ready(kube, namespace, "fleet", source_controller)
        print(f"\n{source_controller.version} azure per object: Ready on {revision} {seconds:.1f}s after apply")
        await unchanged_by_reapply(kube, namespace, "fleet", text)


async def test_azure_controller_identity(flux_world: Flux, tmp_path: Path) -> None:
    kube, clouds, namespace, refresher = flux_world.kube, flux_world.clouds, flux_world.namespace, flux_world.refresher
    source_controller = flux_world.controller
    """The refresher's own workload identity (its projected ServiceAccount token, federated in Entra), used in a
    namespace listed in --identity-namespaces."""
    await client.CoreV1Api(kube.api).create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="refresher"))
    )
    clouds.entra.federate("tenant-r", "refresher-client", namespace, "refresher")
    token = tmp_path / "azure-identity-token"
    token.write_text(await token_requester(kube.api)(namespace, "refresher", names.AZURE_TOKEN_AUDIENCE))
    env = {
        "AZURE_CLIENT_ID": "refresher-client",
        "AZURE_TENANT_ID": "tenant-r",
        "AZURE_FEDERATED_TOKEN_FILE": str(token),
        "AZURE_AUTHORITY_HOST": clouds.entra.url,
    }
    text = manifest("fleet", namespace, url=clouds.repo_url("azure/fleet"), provider="azure")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        async with refresher(f"--identity-namespaces={namespace}"):
            await apply(kube, text)
            revision, seconds = await ready(kube, namespace, "fleet", source_controller)
    print(f"\n{source_controller.version} azure controller identity: Ready on {revision} {seconds:.1f}s")


async def test_existing_gitrepository_taken_over_by_secret_opt_in(flux_world: Flux) -> None:
    kube, clouds, namespace, refresher = flux_world.kube, flux_world.clouds, flux_world.namespace, flux_world.refresher
    source_controller = flux_world.controller
    """A generic GitRepository on a long-lived PAT the Git server no longer accepts: labelling its Secret hands
    the Secret to the refresher, and the GitRepository recovers without being touched."""
    await create_secret(kube, namespace, "github-app", clouds.github_secret_data())
    await create_secret(kube, namespace, "pat", {"username": b"git", "password": b"ghp_revoked_long_lived_token"})
    text = manifest("legacy", namespace, url=clouds.repo_url(f"{GITHUB_ACCOUNT}/infra"), secretRef={"name": "pat"})
    await apply(kube, text)
    async with refresher():
        patch = {
            "metadata": {
                "labels": {names.LABEL_PROVIDER: "github"},
                "annotations": {names.ANNOTATION_CREDENTIALS_SECRET: "github-app"},
            }
        }
        await client.CoreV1Api(kube.api).patch_namespaced_secret("pat", namespace, patch)
        await filled(kube, namespace, "pat", not_password="ghp_revoked_long_lived_token")
        await request_reconcile(kube, namespace, "legacy")
        revision, seconds = await ready(kube, namespace, "legacy", source_controller)
    print(f"\n{source_controller.version} opt-in: Ready on {revision} {seconds:.1f}s after the takeover")
    assert (await get(kube, namespace, "legacy"))["metadata"]["generation"] == 1


async def request_reconcile(kube: Kube, namespace: str, name: str) -> None:
    """What `flux reconcile source git` does: a new reconcile.fluxcd.io/requestedAt."""
    annotation = f"reconcile.fluxcd.io/requestedAt={time.time()}"
    out = await asyncio.to_thread(
        kube.kubectl, "annotate", "gitrepository", name, "-n", namespace, "--overwrite", annotation
    )
    assert out.returncode == 0, out.stderr


async def test_after_the_first_token_expired_a_new_commit_is_fetched(flux_world: Flux) -> None:
    kube, clouds, namespace, refresher = flux_world.kube, flux_world.clouds, flux_world.namespace, flux_world.refresher
    source_controller = flux_world.controller
    text = await flux_world.github_app("app", interval="5s", timeout="5s")
    clouds.github.token_lifetime_s = 30  # renewed ~10 s after issue (2 x (5 s + 5 s) before expiry)
    try:
        async with refresher():
            await apply(kube, text)
            first, _ = await ready(kube, namespace, "app", source_controller)
            first_token = (await filled(kube, namespace, "app-git-token")).data["password"]
            await asyncio.sleep(32)  # the first token has expired
            assert not clouds.github.live(base64.b64decode(first_token).decode())
            change = {"NEW.md": f"{source_controller.version} at {time.time()}\n"}  # the repos are shared
            sha = await asyncio.to_thread(push_commit, clouds.git.root, GITHUB_ACCOUNT, "app", change)
            await request_reconcile(kube, namespace, "app")
            revision, seconds = await ready(kube, namespace, "app", source_controller, revision_not=first)
    finally:
        clouds.github.token_lifetime_s = 3600
    assert sha in revision
    print(
        f"\n{source_controller.version} renewal: Ready on the new revision {revision} {seconds:.1f}s after the request"
    )


async def test_an_unreachable_repository_does_not_stop_its_neighbours_tokens(flux_world: Flux) -> None:
    """#24: two GitRepositories share one GitHub App token; a third names a repository the installation cannot
    reach. GitHub refuses the shared scope (422): only the third is told, and the other two are minted a token
    without it, so they stay Ready past the expiry of the token they held when it appeared."""
    kube, clouds, namespace, refresher = flux_world.kube, flux_world.clouds, flux_world.namespace, flux_world.refresher
    source_controller = flux_world.controller
    app = await flux_world.github_app("app", interval="5s", timeout="5s")
    url = clouds.repo_url(f"{GITHUB_ACCOUNT}/infra")
    infra = manifest("infra", namespace, url=url, provider="github", secretRef={"name": "github-app"}, interval="5s")
    url = clouds.repo_url(f"{GITHUB_ACCOUNT}/typo")
    typo = manifest("typo", namespace, url=url, provider="github", secretRef={"name": "github-app"}, interval="5s")
    clouds.github.token_lifetime_s = 30
    try:
        async with refresher():
            await apply(kube, app)
            await apply(kube, infra)
            first, _ = await ready(kube, namespace, "app", source_controller)
            await ready(kube, namespace, "infra", source_controller)
            held = base64.b64decode((await filled(kube, namespace, "app-git-token")).data["password"]).decode()
            await apply(kube, typo)

            async def told() -> bool:
                return "RepositoryUnreachable" in await reasons(kube, namespace, "typo")

            await eventually(told, timeout=20, what="RepositoryUnreachable on typo")
            await asyncio.sleep(max(0.0, clouds.github.issued[held].expires_at - time.time()) + 2)
            assert not clouds.github.live(held)  # what app and infra held when typo appeared has expired
            change = {"NEW.md": f"{source_controller.version} isolation at {time.time()}\n"}
            sha = await asyncio.to_thread(push_commit, clouds.git.root, GITHUB_ACCOUNT, "app", change)
            await request_reconcile(kube, namespace, "app")
            revision, _ = await ready(kube, namespace, "app", source_controller, revision_not=first)
            await request_reconcile(kube, namespace, "infra")
            await ready(kube, namespace, "infra", source_controller)
            for healthy in ("app", "infra"):
                assert set(await reasons(kube, namespace, healthy)) == {"TokenMinted"}, healthy
            assert "TokenMintFailed" not in await reasons(kube, namespace, "typo")
    finally:
        clouds.github.token_lifetime_s = 3600
    assert sha in revision


async def reasons(kube: Kube, namespace: str, name: str) -> list[str]:
    """The reasons of our Events on GitRepository ``name`` (source-controller's own are left out)."""
    listed = await client.CoreV1Api(kube.api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name},involvedObject.kind=GitRepository"
    )
    return [e.reason for e in listed.items if e.reporting_component == COMPONENT]


async def tenant_namespaces(kube: Kube, platform: str, *suffixes: str) -> list[str]:
    core = client.CoreV1Api(kube.api)
    made = [f"{platform}-{suffix}" for suffix in suffixes]
    for name in made:
        await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return made


async def drop_namespaces(kube: Kube, made: list[str]) -> None:
    for name in made:
        await client.CoreV1Api(kube.api).delete_namespace(name)


def central_grant(namespaces: str, repositories: str | None = None) -> dict[str, str]:
    grant = {names.ANNOTATION_GRANT_NAMESPACES: namespaces}
    if repositories is not None:
        grant[names.ANNOTATION_GRANT_REPOSITORIES] = repositories
    return grant


async def test_a_central_app_serves_the_tenants_it_grants_and_no_one_else(
    flux_world: Flux, caplog: pytest.LogCaptureFixture
) -> None:
    """#17: one GitHub App key, in the platform namespace only. Two granted tenants get separate tokens, each
    scoped to its own repository, and their GitRepositories Ready under the real source-controller. A third
    tenant, not granted, is told NamespaceNotGranted and gets no token; a tenant naming a repository outside the
    grant is told RepositoryNotGranted; a tenant naming another tenant's own Secret as namespace/name is refused
    without the refresher reading it. Removing a grant stops the renewals and leaves the live token alone. No
    Event or log line carries the key, a token, or another tenant's namespace or repositories."""
    caplog.set_level(logging.INFO)
    kube, clouds, platform = flux_world.kube, flux_world.clouds, flux_world.namespace
    source_controller = flux_world.controller
    a, b, c = await tenant_namespaces(kube, platform, "a", "b", "c")
    try:
        data = clouds.github_secret_data()
        await create_secret(
            kube,
            platform,
            "github-app",
            data,
            annotations=central_grant(f"{platform}-a,{platform}-b", "acme/app,acme/infra"),
        )
        await create_secret(kube, a, "own-app", data)  # tenant a's own key: not c's to name
        central = {"name": f"{platform}/github-app"}
        texts = {
            (a, "app"): manifest("app", a, url=clouds.repo_url("acme/app"), provider="github", secretRef=central),
            (b, "infra"): manifest("infra", b, url=clouds.repo_url("acme/infra"), provider="github", secretRef=central),
            (b, "docs"): manifest("docs", b, url=clouds.repo_url("acme/docs"), provider="github", secretRef=central),
            (c, "app"): manifest("app", c, url=clouds.repo_url("acme/app"), provider="github", secretRef=central),
            (c, "stolen"): manifest(
                "stolen", c, url=clouds.repo_url("acme/app"), provider="github", secretRef={"name": f"{a}/own-app"}
            ),
        }
        async with flux_world.refresher(f"--namespaces={platform},{a},{b},{c}", f"--namespace={platform}"):
            for text in texts.values():
                await apply(kube, text)
            await ready(kube, a, "app", source_controller)
            await ready(kube, b, "infra", source_controller)
            tokens = {
                ns: base64.b64decode((await filled(kube, ns, name)).data["password"]).decode()
                for ns, name in ((a, "app-git-token"), (b, "infra-git-token"))
            }
            assert tokens[a] != tokens[b]
            assert clouds.github.issued[tokens[a]].repositories == frozenset({"app"})
            assert clouds.github.issued[tokens[b]].repositories == frozenset({"infra"})

            expected = {(b, "docs"): "RepositoryNotGranted", (c, "app"): "NamespaceNotGranted"}
            expected[(c, "stolen")] = "CredentialsNamespaceRefused"
            for (ns, name), reason in expected.items():

                async def told(ns: str = ns, name: str = name, reason: str = reason) -> bool:
                    return reason in await reasons(kube, ns, name)

                await eventually(told, timeout=20, what=f"{reason} on {ns}/{name}")
                output = await read_secret(kube, ns, f"{name}-git-token")
                assert output is None or not output.data
            for reason in set(expected.values()):
                assert REGISTRY.get_sample_value("flux_passwordless_grant_refused_objects", {"rule": reason}) == 1

            # The platform admin takes tenant b's grant away while its token is live.
            await client.CoreV1Api(kube.api).patch_namespaced_secret(
                "github-app",
                platform,
                {"metadata": {"annotations": central_grant(f"{platform}-a", "acme/app,acme/infra")}},
            )

            async def revoked() -> bool:
                return "NamespaceNotGranted" in await reasons(kube, b, "infra")

            await eventually(revoked, timeout=20, what="NamespaceNotGranted on b/infra")
            minted = len(clouds.github.token_requests)
            await asyncio.sleep(3)  # several passes (credentials re-read every second here)
            left = base64.b64decode((await filled(kube, b, "infra-git-token")).data["password"]).decode()
            assert left == tokens[b]  # not blanked: it expires on its own (docs/security.md)
            assert all(r.get("repositories") != ["infra"] for r in clouds.github.token_requests[minted:])

            told_c = await events_in(kube, c)
            told_b = await events_in(kube, b)
    finally:
        await drop_namespaces(kube, [a, b, c])
    key_line = data["githubAppPrivateKey"].decode().splitlines()[1]
    for message in told_c:
        for secret in (key_line, *tokens.values()):
            assert secret not in message
        assert a not in message or f"{a}/own-app" in message  # only what c wrote itself
        assert b not in message
        assert "infra" not in message
    for message in told_b:
        assert "acme/app" not in message
        assert a not in message
    logged = "\n".join(r.getMessage() + str(getattr(r, "__dict__", "")) for r in caplog.records)
    for secret in (key_line, *tokens.values()):
        assert secret not in logged


async def events_in(kube: Kube, namespace: str) -> list[str]:
    listed = await client.CoreV1Api(kube.api).list_namespaced_event(namespace)
    return [e.message or "" for e in listed.items if e.reporting_component == COMPONENT]


async def test_a_central_google_key_serves_a_granted_tenant(flux_world: Flux) -> None:
    """Grants are provider-neutral: a Google key in the platform namespace, granted to one tenant."""
    kube, clouds, platform = flux_world.kube, flux_world.clouds, flux_world.namespace
    (tenant,) = await tenant_namespaces(kube, platform, "g")
    try:
        key = clouds.google.service_account_key("flux@demo-project.iam.gserviceaccount.com")
        data = {"gcpServiceAccount": json.dumps(key).encode()}
        await create_secret(kube, platform, "gcp-sa", data, annotations=central_grant(tenant))
        url = clouds.repo_url("gcp/infra")
        text = manifest("infra", tenant, url=url, provider="gcp", secretRef={"name": f"{platform}/gcp-sa"})
        async with flux_world.refresher(f"--namespaces={platform},{tenant}", f"--namespace={platform}"):
            await apply(kube, text)
            await ready(kube, tenant, "infra", flux_world.controller)
    finally:
        await drop_namespaces(kube, [tenant])


async def test_moving_to_a_central_credential_keeps_the_gitrepository_ready(flux_world: Flux) -> None:
    """docs/migration.md, as a platform admin and a tenant would run it: a tenant on its own copy of the App key
    switches its GitRepository to the central credential, then deletes its copy; Ready never turns False and a new
    commit is fetched on a token of the central credential."""
    kube, clouds, platform = flux_world.kube, flux_world.clouds, flux_world.namespace
    source_controller = flux_world.controller
    (tenant,) = await tenant_namespaces(kube, platform, "m")
    clouds.github.token_lifetime_s = 30
    try:
        data = clouds.github_secret_data()
        await create_secret(kube, tenant, "github-app", data)
        url = clouds.repo_url(f"{GITHUB_ACCOUNT}/app")
        before = manifest("app", tenant, url=url, provider="github", secretRef={"name": "github-app"}, interval="5s")
        async with flux_world.refresher(f"--namespaces={platform},{tenant}", f"--namespace={platform}"):
            await apply(kube, before)
            first, _ = await ready(kube, tenant, "app", source_controller)
            held = (await filled(kube, tenant, "app-git-token")).data["password"]
            not_ready: list[str] = []
            watching = asyncio.create_task(watch_ready(kube, tenant, "app", not_ready))
            try:
                # 1. the platform admin: the central credential, granting the tenant
                await create_secret(kube, platform, "github-app", data, annotations=central_grant(tenant))
                # 2. the tenant: secretRef to namespace/name, then its own copy goes
                await apply(kube, before.replace("name: github-app", f"name: {platform}/github-app"))
                await client.CoreV1Api(kube.api).delete_namespaced_secret("github-app", tenant)
                # The token it holds came from the same App installation with the same scope: kept, and renewed
                # from the central credential (tokens live 30 s here).
                await filled(kube, tenant, "app-git-token", timeout=40, not_password=base64.b64decode(held).decode())
                change = {"MIGRATED.md": f"{source_controller.version} at {time.time()}\n"}
                sha = await asyncio.to_thread(push_commit, clouds.git.root, GITHUB_ACCOUNT, "app", change)
                await request_reconcile(kube, tenant, "app")
                revision, _ = await ready(kube, tenant, "app", source_controller, revision_not=first)
            finally:
                watching.cancel()
            assert sha in revision
            assert not_ready == []
            obj = await get(kube, tenant, "app")
            assert obj["metadata"]["annotations"][names.ANNOTATION_CREDENTIALS_SECRET] == f"{platform}/github-app"
            assert set(await reasons(kube, tenant, "app")) == {"TokenMinted"}
    finally:
        clouds.github.token_lifetime_s = 3600
        await drop_namespaces(kube, [tenant])


async def watch_ready(kube: Kube, namespace: str, name: str, seen: list[str]) -> None:
    """Append each Ready=False seen on the GitRepository (polled every 0.2 s). Ready=Unknown (Progressing) is
    every reconcile's own in-between state, the one a requested reconcile always shows; a credential the Git
    server refuses is Ready=False."""
    while True:
        status = (await get(kube, namespace, name)).get("status") or {}
        for condition in status.get("conditions") or []:
            if condition["type"] == "Ready" and condition["status"] == "False":
                seen.append(f"{condition['status']} {condition.get('reason')}")
        await asyncio.sleep(0.2)
