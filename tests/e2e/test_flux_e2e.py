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
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from common import names
from refresher.app import token_requester
from refresher.events import COMPONENT
from tests.e2e.conftest import RefresherFactory
from tests.support.clouds import GITHUB_ACCOUNT, Clouds
from tests.support.fluxrepos import apply, get, manifest, ready
from tests.support.gitrepos import create_secret, filled
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
